import { UNKNOWN } from "../core/policy/resources";

/*
 * @pulumi/policy hands policies a proxy that throws on reading a value unknown during preview. The rules in
 * core/policy take plain data instead, with such values as UNKNOWN, so that one unknown field does not stop
 * a whole rule from checking the rest. The error class is internal to @pulumi/policy (not in its typings).
 */
const UnknownValueError: new (...args: never[]) => Error =
  (require("@pulumi/policy/proxy") as { UnknownValueError?: new (...args: never[]) => Error }).UnknownValueError ??
  missing("@pulumi/policy/proxy no longer exports UnknownValueError; policy/plain.ts must follow the installed @pulumi/policy");

function missing(message: string): never {
  throw new Error(message);
}

function read(container: object, key: string): unknown {
  try {
    return plain((container as Record<string, unknown>)[key]);
  } catch (e) {
    if (e instanceof UnknownValueError) return UNKNOWN;
    throw e;
  }
}

export function plain(v: unknown): unknown {
  if (typeof v !== "object" || v === null) return v;
  if (Array.isArray(v)) return Array.from({ length: v.length }, (_, i) => read(v, String(i)));
  return Object.fromEntries(Object.keys(v).map((k) => [k, read(v, k)]));
}

export const plainProps = (props: unknown) => plain(props) as Readonly<Record<string, unknown>>;
