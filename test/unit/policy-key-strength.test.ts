import { generateKeyPairSync } from "node:crypto";
import { certificateKeyProblem, certificateKeyProblems, privateKeyProblem } from "../../core/policy/key-strength";
import { UNKNOWN } from "../../core/policy/resources";

const pem = (k: ReturnType<typeof generateKeyPairSync>["privateKey"]) => k.export({ type: "pkcs8", format: "pem" }) as string;
const rsa = (bits: number) => pem(generateKeyPairSync("rsa", { modulusLength: bits }).privateKey);
const ec = (namedCurve: string) => pem(generateKeyPairSync("ec", { namedCurve }).privateKey);
const ed25519 = pem(generateKeyPairSync("ed25519").privateKey);

describe("tls PrivateKey inputs", () => {
  test.each([
    [{ algorithm: "RSA", rsaBits: 3072 }],
    [{ algorithm: "RSA", rsaBits: 4096 }],
    [{ algorithm: "ECDSA", ecdsaCurve: "P256" }],
    [{ algorithm: "ECDSA", ecdsaCurve: "P384" }],
    [{ algorithm: "ED25519" }],
    [{ algorithm: UNKNOWN }],
    [{ algorithm: "RSA", rsaBits: UNKNOWN }],
  ])("%j passes", (props) => {
    expect(privateKeyProblem(props)).toBeUndefined();
  });

  test.each([
    [{ algorithm: "RSA" }, /RSA key of 2048 bits \(the provider's default\)/],
    [{ algorithm: "RSA", rsaBits: 2048 }, /RSA key of 2048 bits: set rsaBits to 3072/],
    [{ algorithm: "ECDSA" }, /ECDSA curve P224 \(the provider's default\)/],
    [{ algorithm: "ECDSA", ecdsaCurve: "P521" }, /ECDSA curve P521: set ecdsaCurve to P256 or P384/],
    [{ algorithm: "DSA" }, /"DSA" is not RSA, ECDSA or ED25519/],
  ])("%j fails: %s", (props, message) => {
    expect(privateKeyProblem(props)).toMatch(message);
  });
});

describe("the key behind a certificate (read from the PEM itself)", () => {
  test.each([["RSA 3072", rsa(3072)], ["P-256", ec("prime256v1")], ["P-384", ec("secp384r1")]])("%s passes", (_what, key) => {
    expect(certificateKeyProblem(key, "privateKeyPem")).toBeUndefined();
  });

  test.each([
    ["RSA 2048", rsa(2048), /privateKeyPem is an RSA key of 2048 bits/],
    ["P-521", ec("secp521r1"), /ECDSA key on secp521r1: use P256 or P384/],
    ["Ed25519", ed25519, /ED25519 key: browsers, Windows, older Java and FIPS-mode clients reject/],
    ["not a key", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", /not a readable unencrypted PEM private key/],
  ])("%s fails", (_what, key, message) => {
    expect(certificateKeyProblem(key, "privateKeyPem")).toMatch(message);
  });

  test("each certificate type is checked on the input that carries its key; unknown keys wait for the update", () => {
    expect(certificateKeyProblems("tls:index/selfSignedCert:SelfSignedCert", { privateKeyPem: ed25519 })).toHaveLength(1);
    expect(certificateKeyProblems("tls:index/certRequest:CertRequest", { privateKeyPem: ed25519 })).toHaveLength(1);
    expect(certificateKeyProblems("tls:index/locallySignedCert:LocallySignedCert", { caPrivateKeyPem: ed25519, certRequestPem: "csr" })).toEqual([
      expect.stringMatching(/^caPrivateKeyPem is an ED25519 key/),
    ]);
    expect(certificateKeyProblems("tls:index/selfSignedCert:SelfSignedCert", { privateKeyPem: UNKNOWN })).toEqual([]);
    expect(certificateKeyProblems("tls:index/privateKey:PrivateKey", { privateKeyPem: ed25519 })).toEqual([]);
  });
});
