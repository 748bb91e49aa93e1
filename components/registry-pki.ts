import * as pulumi from "@pulumi/pulumi";
import * as tls from "@pulumi/tls";
import { GeneratedCaConfig, ImportedCaConfig, ServingConfig } from "../core/config/model";
import { Endpoint, endpointKey } from "../core/endpoint";
import { bundleGenerations, servingSans, summarize, tlsKeyArgs } from "../core/pki/plan";
import { CertSummary } from "../core/x509/cert";
import { assembleBundle, bundleHash, inspectBundle } from "../core/x509/bundle";
import { parsePemCertificates, toPem } from "../core/x509/pem";
import { formatProblem } from "../core/x509/problems";
import { verifyServing } from "../core/x509/verify";

/*
 * Structural settings (CA mode, generations, endpoints) are plain values rather than Inputs: they decide
 * which child resources exist and what they are named, which Pulumi must know while registering them.
 */
export interface RegistryPkiArgs {
  /** Endpoints the serving certificate covers (DNS and IP SANs) and the verification runs against. */
  readonly endpoints: readonly Endpoint[];
  /** Generated CA generations, or an imported bundle. */
  readonly ca: GeneratedCaConfig | ImportedCaConfig;
  /** Serving certificate settings; `mode: "external"` issues nothing. */
  readonly serving: ServingConfig;
  /** External serving private key (PEM), passed through as a secret output. @default none */
  readonly externalServingKeyPem?: pulumi.Input<string>;
  /** Warn when a CA or the serving certificate expires within this many days. @default 30 */
  readonly expiryWarningDays?: number;
}

const HOURS_PER_DAY = 24;

/**
 * The registry's certificates and the trust bundle nodes receive. Generated mode keeps one CA per
 * generation (children named by generation, so raising the generation adds a CA and retires only what
 * falls out of retention) and issues the serving certificate from the newest one; imported mode
 * distributes an existing bundle. The bundle output only resolves once the serving certificate has been
 * verified against it for every endpoint, so nothing downstream can consume an unverified bundle.
 */
export class RegistryPki extends pulumi.ComponentResource {
  /** PEM trust bundle: newest generation first, deduplicated, canonical. */
  readonly bundlePem: pulumi.Output<string>;
  /** sha256 of bundlePem; names the bundle in triggers and templates. */
  readonly bundleHash: pulumi.Output<string>;
  /** Generations in the bundle, newest first (generated mode). */
  readonly generations: readonly number[];
  /** Subject, fingerprint and validity of each bundle certificate. */
  readonly caCertificates: pulumi.Output<CertSummary[]>;
  /** The serving certificate (leaf) PEM, when known to this stack. */
  readonly servingCertPem: pulumi.Output<string | undefined>;
  /** Leaf followed by intermediates, as the registry should serve it. */
  readonly servingChainPem: pulumi.Output<string | undefined>;
  /** The serving private key, as a secret. */
  readonly servingKeyPem: pulumi.Output<string | undefined>;
  /** Subject, fingerprint and validity of the serving certificate. */
  readonly servingCertificate: pulumi.Output<CertSummary | undefined>;

  constructor(name: string, args: RegistryPkiArgs, opts?: pulumi.ComponentResourceOptions) {
    super("registry-trust:index:RegistryPki", name, {}, opts);
    const warnDays = args.expiryWarningDays ?? 30;

    let rawBundle: pulumi.Output<string>;
    let chain: pulumi.Output<string | undefined>;
    let key: pulumi.Output<string | undefined>;

    if (args.ca.mode === "generate") {
      const ca = args.ca;
      this.generations = bundleGenerations(ca.generation, ca.retainGenerations);
      const cas = this.generations.map((g) => this.caGeneration(name, ca, g));
      const current = cas[0];
      if (args.serving.mode === "generate") {
        const issued = this.servingCert(name, args, current);
        chain = issued.certPem;
        key = pulumi.secret(issued.keyPem);
      } else {
        chain = pulumi.output(args.serving.chainPem);
        key = args.externalServingKeyPem ? pulumi.secret(pulumi.output(args.externalServingKeyPem)) : pulumi.output(undefined);
      }
      rawBundle = pulumi.all(cas.map((c) => c.certPem)).apply((pems) => assembleBundle(pems).pem);
    } else {
      this.generations = [];
      rawBundle = pulumi.output(assembleBundle([args.ca.bundlePem]).pem);
      chain = pulumi.output(args.serving.chainPem);
      key = args.externalServingKeyPem ? pulumi.secret(pulumi.output(args.externalServingKeyPem)) : pulumi.output(undefined);
    }

    this.bundlePem = pulumi.all([rawBundle, chain]).apply(([bundle, served]) => {
      this.verify(bundle, served, args.endpoints, warnDays);
      return bundle;
    });
    this.bundleHash = this.bundlePem.apply(bundleHash);
    this.caCertificates = this.bundlePem.apply(summarize);
    this.servingChainPem = chain;
    this.servingCertPem = chain.apply((c) => (c ? parsePemCertificates(c, "chain").certs.map((x) => toPem(x.der)).shift() : undefined));
    this.servingKeyPem = key;
    this.servingCertificate = chain.apply((c) => (c ? summarize(c)[0] : undefined));

    this.registerOutputs({
      bundlePem: this.bundlePem,
      bundleHash: this.bundleHash,
      caCertificates: this.caCertificates,
      servingCertPem: this.servingCertPem,
      servingCertificate: this.servingCertificate,
    });
  }

  private caGeneration(name: string, ca: GeneratedCaConfig, generation: number) {
    // A CA's settings are fixed when its generation is created: changing caKeyAlgorithm or caCommonName
    // must not replace live CAs (that would drop the CA of the certificate being served from every bundle
    // at once). New settings apply from the next generation on.
    const keyOpts = { parent: this, ignoreChanges: ["algorithm", "ecdsaCurve", "rsaBits"] };
    const key = new tls.PrivateKey(`${name}-ca-g${generation}-key`, tlsKeyArgs(ca.keyAlgorithm), keyOpts);
    return new tls.SelfSignedCert(`${name}-ca-g${generation}`, {
      privateKeyPem: key.privateKeyPem,
      isCaCertificate: true,
      setSubjectKeyId: true,
      subject: { commonName: `${ca.commonName} G${generation}`, organization: ca.organization },
      validityPeriodHours: ca.validityDays * HOURS_PER_DAY,
      allowedUses: ["cert_signing", "crl_signing"],
    }, { parent: this, ignoreChanges: ["subject", "validityPeriodHours"] });
  }

  private servingCert(name: string, args: RegistryPkiArgs, issuer: tls.SelfSignedCert) {
    const caKey = issuer.privateKeyPem;
    const key = new tls.PrivateKey(`${name}-serving-key`, tlsKeyArgs(args.serving.keyAlgorithm), { parent: this });
    const sans = servingSans(args.endpoints);
    const csr = new tls.CertRequest(`${name}-serving-csr`, {
      privateKeyPem: key.privateKeyPem,
      subject: { commonName: args.endpoints[0]?.host },
      dnsNames: sans.dnsNames,
      ipAddresses: sans.ipAddresses,
    }, { parent: this });
    const cert = new tls.LocallySignedCert(`${name}-serving`, {
      certRequestPem: csr.certRequestPem,
      caCertPem: issuer.certPem,
      caPrivateKeyPem: caKey,
      validityPeriodHours: args.serving.validityDays * HOURS_PER_DAY,
      earlyRenewalHours: args.serving.renewBeforeDays * HOURS_PER_DAY,
      setSubjectKeyId: true,
      allowedUses: ["digital_signature", "key_encipherment", "server_auth"],
    }, { parent: this });
    return { certPem: cert.certPem, keyPem: key.privateKeyPem };
  }

  /** Refuses a bundle that would not make runtimes trust the serving certificate on every endpoint. */
  private verify(bundlePem: string, chainPem: string | undefined, endpoints: readonly Endpoint[], warnDays: number): void {
    const report = inspectBundle(bundlePem, "trust bundle");
    const failures = report.problems.filter((p) => p.severity === "error").map(formatProblem);
    const warnings = report.problems.filter((p) => p.severity === "warning").map(formatProblem);
    if (chainPem) {
      const chain = parsePemCertificates(chainPem, "serving chain");
      failures.push(...chain.problems.map(formatProblem));
      for (const e of endpoints) {
        if (chain.certs.length === 0) break;
        const v = verifyServing({ bundle: report.certs, chain: chain.certs, host: e.host, expiryWarningDays: warnDays });
        failures.push(...v.problems.filter((p) => p.severity === "error").map((p) => `${endpointKey(e)}: ${formatProblem(p)}`));
        warnings.push(...v.problems.filter((p) => p.severity === "warning").map((p) => `${endpointKey(e)}: ${formatProblem(p)}`));
      }
    }
    for (const w of new Set(warnings)) pulumi.log.warn(w, this);
    if (failures.length > 0) {
      throw new pulumi.ResourceError(`The trust bundle does not verify the serving certificate; nothing was distributed:\n  ${failures.join("\n  ")}`, this);
    }
  }
}
