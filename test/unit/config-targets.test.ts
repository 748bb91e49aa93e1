// The rotation keys of the stack config: servingTarget, daemonset, preflightAllowUnreachable.
import { ConfigError } from "../../core/config/issues";
import { parseStackConfig } from "../../core/config/validate";
import { rawFrom } from "../support/stack-files";

const registries = [{ host: "registry.test", port: 5000 }];
const clusters = [{ name: "mgmt" }];
const parse = (values: Record<string, unknown>) => parseStackConfig(rawFrom({ registries, ...values }), { baseDir: "/" });
function problems(values: Record<string, unknown>): string {
  try {
    parse(values);
  } catch (e) {
    if (e instanceof ConfigError) return e.message;
    throw e;
  }
  throw new Error("expected the config to be refused");
}
const HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHgsSXB27KRGxzrx4ETWC3ACMGW/F9auj4bConhNs+M7";
const hostFiles = { kind: "hostFiles", host: "registry-host.example", hostKey: HOST_KEY, certPath: "/etc/registry/tls.crt", keyPath: "/etc/registry/tls.key", reloadCommand: ["systemctl", "reload", "docker-registry"] };

test("defaults: no serving switch, no DaemonSet, unreachable live state is an error", () => {
  const c = parse({});
  expect(c.servingTarget).toEqual({ kind: "none" });
  expect(c.daemonSet).toBeUndefined();
  expect(c.policy.preflightAllowUnreachable).toBe(false);
});

test("a kubernetesSecret target names a configured cluster", () => {
  expect(parse({ clusters, servingTarget: { kind: "kubernetesSecret", cluster: "mgmt", namespace: "registry", name: "registry-tls" } }).servingTarget)
    .toEqual({ kind: "kubernetesSecret", cluster: "mgmt", namespace: "registry", name: "registry-tls", verifyTimeoutSeconds: 120 });
  const text = problems({ clusters, servingTarget: { kind: "kubernetesSecret", cluster: "other", nmae: "x" } });
  expect(text).toContain('registry-trust:servingTarget.nmae = "x": unknown field.');
  expect(text).toContain('registry-trust:servingTarget.cluster = "other": must name one of clusters[].name (mgmt).');
  expect(text).toContain("registry-trust:servingTarget.name = (unset): is required: the name of the registry's TLS Secret.");
});

test("a hostFiles target: defaults filled in, paths and reload words checked", () => {
  expect(parse({ servingTarget: hostFiles }).servingTarget).toEqual({ ...hostFiles, port: 22, user: "root", verifyTimeoutSeconds: 120 });
  const text = problems({ servingTarget: { ...hostFiles, certPath: "tls.crt", keyPath: "/etc/registry/tls.key", reloadCommand: ["kill", "-HUP", "$(pidof registry)"], verifyTimeoutSeconds: -1 } });
  expect(text).toContain('registry-trust:servingTarget.certPath = "tls.crt": is not an absolute path: it must be an absolute, normalized path.');
  expect(text).toContain('registry-trust:servingTarget.reloadCommand[2] = "$(pidof registry)": must be a plain word');
  expect(text).toContain("registry-trust:servingTarget.verifyTimeoutSeconds = -1: must be an integer from 0 to 3600");
  expect(problems({ servingTarget: { ...hostFiles, reloadCommand: "systemctl reload docker-registry" } }))
    .toContain("registry-trust:servingTarget.reloadCommand = \"systemctl reload docker-registry\": must be the reload command as a non-empty list of words (argv)");
  expect(problems({ servingTarget: { ...hostFiles, keyPath: hostFiles.certPath } })).toContain("registry-trust:servingTarget.keyPath = \"/etc/registry/tls.crt\": is the same file as certPath.");
  expect(problems({ servingTarget: { kind: "files" } })).toContain('registry-trust:servingTarget.kind = "files": must be one of none, kubernetesSecret, hostFiles.');
});

test("the registry host's SSH key is pinned in every stack, the lab opt-out included: the private key goes there", () => {
  const { hostKey: _, ...unpinned } = hostFiles;
  for (const values of [{}, { production: true }, { allowUnpinnedHostKeys: true }]) {
    expect(problems({ ...values, servingTarget: unpinned })).toContain("registry-trust:servingTarget.hostKey = (unset): is required: the serving private key is pushed to this host");
  }
});

test("hostFiles paths must be absolute and normalized: each refusal names the field and the value", () => {
  const bad: Array<[string, RegExp]> = [
    ["/etc/registry/../../etc/shadow", /is not normalized/],
    ["etc/registry/tls.key", /is not an absolute path/],
    ["/etc/registry//tls.key", /empty segment/],
    ["/etc/registry/tls.key/.", /is not normalized/],
    ["/etc/registry/", /names a directory/],
    ["/etc/registry/tls key", /characters other than/],
  ];
  for (const [keyPath, why] of bad) {
    const text = problems({ servingTarget: { ...hostFiles, keyPath } });
    expect(text).toContain(`registry-trust:servingTarget.keyPath = ${JSON.stringify(keyPath)}: `);
    expect(text).toMatch(why);
    expect(text).toMatch(/fix: Give the file's real absolute path/);
  }
});

test("a serving switch needs the key: refused in external mode without servingKey", () => {
  expect(problems({ servingCertMode: "external", servingTarget: hostFiles }))
    .toContain('registry-trust:servingTarget.kind = "hostFiles": needs the serving private key to install, and servingCertMode is external without servingKey.');
});

test("the DaemonSet option: a configured cluster and an image the nodes can pull before they trust the registry", () => {
  expect(parse({ clusters, daemonset: { enabled: true, cluster: "mgmt", image: "docker.io/library/busybox:1.36" } }).daemonSet)
    .toEqual({ cluster: "mgmt", namespace: "kube-system", image: "docker.io/library/busybox:1.36" });
  expect(parse({ daemonset: { enabled: false, image: "registry.test:5000/busybox" } }).daemonSet).toBeUndefined();
  const text = problems({ clusters, daemonset: { enabled: true, cluster: "mgmt", image: "registry.test:5000/tools/busybox:1.36" } });
  expect(text).toContain('registry-trust:daemonset.image = "registry.test:5000/tools/busybox:1.36": image "registry.test:5000/tools/busybox:1.36" is on registry.test:5000, a registry this DaemonSet makes trusted');
  expect(problems({ clusters, daemonset: { enabled: "yes", cluster: "mgmt" } })).toContain('registry-trust:daemonset.enabled = "yes": must be true or false.');
  expect(problems({ daemonset: { enabled: true } })).toMatch(/registry-trust:daemonset.cluster = \(unset\): must name one of clusters\[\].name \(no clusters configured\)[\s\S]*registry-trust:daemonset.image = \(unset\): is required/);
});
