/*
 * A minimal DER reader in the manner of Go's cryptobyte, so that certificates are accepted or refused on
 * the same structural rules as Go's crypto/x509 parser (x509-limbo has cases that the generic ASN.1
 * libraries either reject, e.g. thousands of name constraints, or accept where Go refuses).
 * Every failure throws a DerError; parseCertificate turns it into a refusal.
 */

export class DerError extends Error {}

export interface Element {
  /** Tag byte(s) as one number: class and constructed bits included (0x30 = SEQUENCE, 0xa3 = [3] constructed). */
  readonly tag: number;
  /** Content octets. */
  readonly value: Buffer;
  /** Tag, length and content. */
  readonly full: Buffer;
}

export const TAG = {
  BOOLEAN: 0x01, INTEGER: 0x02, BIT_STRING: 0x03, OCTET_STRING: 0x04, NULL: 0x05, OID: 0x06,
  SEQUENCE: 0x30, SET: 0x31,
} as const;

/** Context-specific tag number n; constructed when asked. */
export const ctx = (n: number, constructed = false) => 0x80 | (constructed ? 0x20 : 0) | n;

export class DerReader {
  private pos = 0;
  constructor(private readonly buf: Buffer, private readonly what = "DER") {}

  empty(): boolean {
    return this.pos >= this.buf.length;
  }

  peekTag(): number | undefined {
    return this.empty() ? undefined : this.buf[this.pos];
  }

  /** Reads any element; DER only: definite, minimal lengths, single-byte tags (as every X.509 field uses). */
  readAny(): Element {
    const start = this.pos;
    if (this.buf.length - start < 2) throw new DerError(`${this.what}: truncated element`);
    const tag = this.buf[start];
    if ((tag & 0x1f) === 0x1f) throw new DerError(`${this.what}: multi-byte tags are not supported`);
    let len = this.buf[start + 1];
    let header = 2;
    if (len & 0x80) {
      const n = len & 0x7f;
      if (n === 0 || n > 4) throw new DerError(`${this.what}: invalid length encoding`);
      if (this.buf.length - start < 2 + n) throw new DerError(`${this.what}: truncated length`);
      len = 0;
      for (let i = 0; i < n; i++) len = len * 256 + this.buf[start + 2 + i];
      if (this.buf[start + 2] === 0 || len < 0x80) throw new DerError(`${this.what}: non-minimal length`);
      header = 2 + n;
    }
    const end = start + header + len;
    if (end > this.buf.length) throw new DerError(`${this.what}: element longer than its container`);
    this.pos = end;
    return { tag, value: this.buf.subarray(start + header, end), full: this.buf.subarray(start, end) };
  }

  read(tag: number): Element {
    const t = this.peekTag();
    if (t !== tag) throw new DerError(`${this.what}: expected tag 0x${tag.toString(16)}, found ${t === undefined ? "end of data" : `0x${t.toString(16)}`}`);
    return this.readAny();
  }

  readOptional(tag: number): Element | undefined {
    return this.peekTag() === tag ? this.readAny() : undefined;
  }

  end(): void {
    if (!this.empty()) throw new DerError(`${this.what}: trailing data`);
  }
}

/** The elements of a constructed value, in order. */
export function children(value: Buffer, what = "DER"): Element[] {
  const r = new DerReader(value, what);
  const out: Element[] = [];
  while (!r.empty()) out.push(r.readAny());
  return out;
}

/** Dotted text of an OBJECT IDENTIFIER's content octets. */
export function oidText(value: Buffer): string {
  if (value.length === 0 || value[value.length - 1] & 0x80) throw new DerError("malformed OID");
  const arcs: number[] = [];
  let n = 0;
  for (let i = 0; i < value.length; i++) {
    if (n === 0 && value[i] === 0x80) throw new DerError("malformed OID");
    n = n * 128 + (value[i] & 0x7f);
    if (!(value[i] & 0x80)) {
      arcs.push(n);
      n = 0;
    }
  }
  const first = arcs[0] < 40 ? 0 : arcs[0] < 80 ? 1 : 2;
  return [first, arcs[0] - first * 40, ...arcs.slice(1)].join(".");
}

/** Sign of a DER INTEGER's content (-1, 0, 1); throws when it is not minimally encoded, as Go does. */
export function integerSign(value: Buffer): number {
  if (value.length === 0) throw new DerError("malformed integer");
  if (value.length > 1 && ((value[0] === 0 && !(value[1] & 0x80)) || (value[0] === 0xff && value[1] & 0x80))) throw new DerError("non-minimal integer");
  if (value[0] & 0x80) return -1;
  return value.some((b) => b !== 0) ? 1 : 0;
}

/** A small non-negative INTEGER (path lengths, versions). */
export function smallInteger(value: Buffer): number {
  if (integerSign(value) < 0) throw new DerError("negative integer");
  if (value.length > 6) throw new DerError("integer too large");
  return value.reduce((n, b) => n * 256 + b, 0);
}

/** A signed INTEGER of at most 8 bytes (Go reads these into an int64), as a number. */
export function int64(value: Buffer): number {
  integerSign(value);
  if (value.length > 8) throw new DerError("integer does not fit in 64 bits");
  let n = BigInt(value[0] & 0x80 ? -1 : 0);
  for (const b of value) n = (n << 8n) | BigInt(b);
  return Number(BigInt.asIntN(64, n));
}

/** BIT STRING content → the bits as bytes, with the count of unused trailing bits checked. */
export function bitString(value: Buffer): { bytes: Buffer; bitLength: number } {
  if (value.length === 0) throw new DerError("malformed bit string");
  const unused = value[0];
  if (unused > 7 || (value.length === 1 && unused !== 0)) throw new DerError("malformed bit string");
  const bytes = value.subarray(1);
  if (unused && bytes[bytes.length - 1] & ((1 << unused) - 1)) throw new DerError("malformed bit string");
  return { bytes, bitLength: bytes.length * 8 - unused };
}

/** Go's BitString.RightAlign: the bits shifted so that the unused ones fall off the front. */
export function rightAlign(b: { bytes: Buffer; bitLength: number }): Buffer {
  const shift = 8 - (b.bitLength % 8);
  if (shift === 8 || b.bytes.length === 0) return b.bytes;
  const out = Buffer.alloc(b.bytes.length);
  out[0] = b.bytes[0] >> shift;
  for (let i = 1; i < b.bytes.length; i++) out[i] = ((b.bytes[i - 1] << (8 - shift)) & 0xff) | (b.bytes[i] >> shift);
  return out;
}
