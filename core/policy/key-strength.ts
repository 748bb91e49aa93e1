import { createPrivateKey } from "node:crypto";
import { TLS_CERT_REQUEST, TLS_LOCALLY_SIGNED_CERT, TLS_SELF_SIGNED_CERT, isUnknown } from "./resources";

/*
 * Key floor. RSA below 3072 bits falls short of 128-bit security (NIST SP 800-57). Go's crypto/tls
 * (containerd, Docker, CRI-O, kubelet) cannot sign a handshake with P-224, and BoringSSL-based clients
 * (Chrome among them) do not accept P-521, so ECDSA is P-256 or P-384, the curves this module's
 * caKeyAlgorithm/servingKeyAlgorithm offer. @pulumi/tls's own defaults are weak (rsaBits 2048, ecdsaCurve
 * P224), so an unset size or curve counts as that default.
 *
 * ED25519 is fine for SSH keys but not behind an X.509 certificate: browsers, Windows SChannel, Java before
 * 15 and FIPS-mode OpenSSL and Go builds reject Ed25519 certificates, and the CA/Browser Forum rules exclude
 * them, so a registry CA or serving certificate on Ed25519 breaks some of the clients a registry has. That is
 * checked on the certificate resources, from the key they are made from or signed with.
 */

export const MIN_RSA_BITS = 3072;
export const ECDSA_CURVES: readonly string[] = ["P256", "P384"];
const PROVIDER_DEFAULT_RSA_BITS = 2048;
const PROVIDER_DEFAULT_CURVE = "P224";
/** node:crypto's names for the allowed curves. */
const ALLOWED_NAMED_CURVES: Readonly<Record<string, string>> = { prime256v1: "P256", secp384r1: "P384" };

/** The problem with a tls PrivateKey's algorithm and size, or undefined. */
export function privateKeyProblem(props: Readonly<Record<string, unknown>>): string | undefined {
  const alg = props.algorithm;
  if (isUnknown(alg)) return undefined;
  switch (alg) {
    case "RSA": {
      const bits = props.rsaBits ?? PROVIDER_DEFAULT_RSA_BITS;
      if (isUnknown(bits)) return undefined;
      return typeof bits === "number" && bits >= MIN_RSA_BITS ? undefined
        : `RSA key of ${String(bits)} bits${props.rsaBits === undefined ? " (the provider's default)" : ""}: set rsaBits to ${MIN_RSA_BITS} or 4096`;
    }
    case "ECDSA": {
      const curve = props.ecdsaCurve ?? PROVIDER_DEFAULT_CURVE;
      if (isUnknown(curve)) return undefined;
      return typeof curve === "string" && ECDSA_CURVES.includes(curve) ? undefined
        : `ECDSA curve ${String(curve)}${props.ecdsaCurve === undefined ? " (the provider's default)" : ""}: set ecdsaCurve to P256 or P384`;
    }
    case "ED25519":
      return undefined;
    default:
      return `algorithm ${JSON.stringify(alg)} is not RSA, ECDSA or ED25519`;
  }
}

/** The problem with the PEM private key a certificate is made from or signed with, or undefined. */
export function certificateKeyProblem(pem: unknown, input: string): string | undefined {
  if (isUnknown(pem) || typeof pem !== "string" || pem === "") return undefined;
  let key;
  try {
    key = createPrivateKey(pem);
  } catch {
    return `${input} is not a readable unencrypted PEM private key`;
  }
  const details = key.asymmetricKeyDetails ?? {};
  switch (key.asymmetricKeyType) {
    case "rsa":
    case "rsa-pss":
      return (details.modulusLength ?? 0) >= MIN_RSA_BITS ? undefined : `${input} is an RSA key of ${details.modulusLength} bits: use ${MIN_RSA_BITS} or 4096`;
    case "ec":
      return details.namedCurve && ALLOWED_NAMED_CURVES[details.namedCurve] ? undefined : `${input} is an ECDSA key on ${details.namedCurve ?? "an unnamed curve"}: use P256 or P384`;
    case "ed25519":
    case "ed448":
      return `${input} is an ${key.asymmetricKeyType.toUpperCase()} key: browsers, Windows, older Java and FIPS-mode clients reject such certificates; use ECDSA P256/P384 or RSA ${MIN_RSA_BITS}+`;
    default:
      return `${input} is a ${key.asymmetricKeyType} key, not RSA or ECDSA`;
  }
}

/** Certificate inputs that carry the key the certificate is made from or signed with, by resource type. */
export const CERTIFICATE_KEY_INPUTS: Readonly<Record<string, readonly string[]>> = {
  [TLS_SELF_SIGNED_CERT]: ["privateKeyPem"],
  [TLS_CERT_REQUEST]: ["privateKeyPem"],
  [TLS_LOCALLY_SIGNED_CERT]: ["caPrivateKeyPem"],
};

/** Every key problem of a certificate resource (SelfSignedCert, CertRequest, LocallySignedCert). */
export function certificateKeyProblems(type: string, props: Readonly<Record<string, unknown>>): string[] {
  return (CERTIFICATE_KEY_INPUTS[type] ?? []).flatMap((input) => {
    const p = certificateKeyProblem(props[input], input);
    return p ? [p] : [];
  });
}
