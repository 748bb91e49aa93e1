/*
 * Images a lab node running a real kubelet needs, built without any public registry (none is reachable):
 * - the pod sandbox ("pause") image containerd starts every pod with: Kubernetes' own pause.c
 *   (k8s.io/kubernetes/build/pause/linux/pause.c from the module cache, the source of
 *   registry.k8s.io/pause) compiled statically with the host's gcc;
 * - a busybox image: Debian's statically linked busybox (package busybox-static) with the applets the
 *   pods here run (sh, chroot, sleep, cat, ls, …) as symlinks, as the busybox image lays them out.
 * Both are deterministic OCI layouts (fixed owner, mode, mtime; gzip without a name or time).
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { gzipSync } from "node:zlib";
import { runOk } from "./proc";

export const BUSYBOX = "/bin/busybox";
const APPLETS = ["sh", "chroot", "sleep", "cat", "ls", "test", "echo", "mkdir", "rm", "sed", "grep", "id", "env", "true", "false"];

type Entry = { name: string; mode: number; content?: Buffer; linkTo?: string; dir?: boolean };

function tar(entries: readonly Entry[]): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    const header = Buffer.alloc(512);
    const put = (value: string, offset: number, length: number): void => void header.write(value, offset, Math.min(Buffer.byteLength(value), length), "ascii");
    const octal = (n: number, width: number): string => n.toString(8).padStart(width - 1, "0") + "\0";
    const body = e.content ?? Buffer.alloc(0);
    put(e.name, 0, 100);
    put(octal(e.mode, 8), 100, 8);
    put(octal(0, 8), 108, 8);
    put(octal(0, 8), 116, 8);
    put(octal(body.length, 12), 124, 12);
    put(octal(0, 12), 136, 12);
    put("        ", 148, 8);
    put(e.dir ? "5" : e.linkTo !== undefined ? "2" : "0", 156, 1);
    if (e.linkTo !== undefined) put(e.linkTo, 157, 100);
    put("ustar\0", 257, 6);
    put("00", 263, 2);
    let sum = 0;
    for (const b of header) sum += b;
    put(octal(sum, 7) + " ", 148, 8);
    parts.push(header, body, Buffer.alloc((512 - (body.length % 512)) % 512));
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

const sha256 = (b: Buffer | string): string => `sha256:${createHash("sha256").update(b).digest("hex")}`;
const ARCH = ({ x64: "amd64", arm64: "arm64" } as Record<string, string>)[process.arch] ?? process.arch;

export interface BuiltImage {
  /** OCI image layout directory. */
  dir: string;
  /** Reference the layout names (annotation io.containerd.image.name), e.g. registry.k8s.io/pause:3.6. */
  ref: string;
  /** Tag inside the layout (org.opencontainers.image.ref.name), for `skopeo copy oci:DIR:TAG`. */
  tag: string;
  manifestDigest: string;
}

function writeLayout(dir: string, ref: string, entries: readonly Entry[], config: Record<string, unknown>): BuiltImage {
  const blobs = path.join(dir, "blobs", "sha256");
  fs.mkdirSync(blobs, { recursive: true });
  const put = (b: Buffer): { digest: string; size: number } => {
    const digest = sha256(b);
    fs.writeFileSync(path.join(blobs, digest.slice("sha256:".length)), b);
    return { digest, size: b.length };
  };
  const layerTar = tar(entries);
  const layer = put(gzipSync(layerTar, { level: 6 }));
  // The reference as a label makes each image's config, hence its image ID, distinct: two references with one
  // ID are one image to the kubelet, whose pull records (KEP-2535) then treat an imported image as pulled
  // under the other name and re-pull it under its own (the lab's busybox on the private registry and the
  // imported one did exactly that: "lookup lab.local: no such host").
  const cfg = put(Buffer.from(JSON.stringify({ architecture: ARCH, os: "linux", config: { ...config, Labels: { "lab.registry-trust.io/ref": ref } }, rootfs: { type: "layers", diff_ids: [sha256(layerTar)] } })));
  const manifest = put(Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: "application/vnd.oci.image.manifest.v1+json",
    config: { mediaType: "application/vnd.oci.image.config.v1+json", ...cfg },
    layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", ...layer }],
  })));
  const tag = ref.slice(ref.lastIndexOf(":") + 1);
  fs.writeFileSync(path.join(dir, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  fs.writeFileSync(path.join(dir, "index.json"), JSON.stringify({
    schemaVersion: 2,
    manifests: [{
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      ...manifest,
      annotations: { "io.containerd.image.name": ref, "org.opencontainers.image.ref.name": tag },
    }],
  }));
  return { dir, ref, tag, manifestDigest: manifest.digest };
}

/** The pause image under `ref` (the node runtime's sandbox image name), built from Kubernetes' pause.c. */
export async function buildPauseImage(dir: string, ref: string, pauseSource: string): Promise<BuiltImage> {
  fs.mkdirSync(dir, { recursive: true });
  const bin = path.join(dir, "pause.bin");
  await runOk("gcc", ["-Os", "-static", "-Wall", "-DVERSION=lab", "-o", bin, pauseSource]);
  await runOk("strip", [bin]);
  const content = fs.readFileSync(bin);
  fs.rmSync(bin);
  return writeLayout(path.join(dir, "layout"), ref, [{ name: "pause", mode: 0o755, content }], { Entrypoint: ["/pause"], User: "65535:65535" });
}

/** A busybox image under `ref` from Debian's static busybox. */
export function buildBusyboxImage(dir: string, ref: string): BuiltImage {
  if (!fs.existsSync(BUSYBOX)) throw new Error(`lab: ${BUSYBOX} is missing: install Debian's busybox-static (scripts/install-lab-deps.sh)`);
  const entries: Entry[] = [
    { name: "bin/", mode: 0o755, dir: true },
    { name: "bin/busybox", mode: 0o755, content: fs.readFileSync(BUSYBOX) },
    ...APPLETS.map((a) => ({ name: `bin/${a}`, mode: 0o777, linkTo: "busybox" })),
    { name: "tmp/", mode: 0o1777, dir: true },
  ];
  return writeLayout(path.join(dir, "layout"), ref, entries, { Cmd: ["sh"], Env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"] });
}

/** A tar of an OCI layout, the archive `ctr images import` reads. */
export async function layoutArchive(image: BuiltImage, file: string): Promise<string> {
  await runOk("tar", ["--sort=name", "--mtime=@0", "--owner=0", "--group=0", "-C", image.dir, "-cf", file, "."]);
  return file;
}
