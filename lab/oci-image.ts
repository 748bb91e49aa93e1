import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { gzipSync } from "node:zlib";

export interface OciLayout {
  dir: string;
  tag: string;
  manifestDigest: string;
}

const sha256 = (b: Buffer | string): string => `sha256:${createHash("sha256").update(b).digest("hex")}`;

/** One regular file as a ustar archive, with fixed owner, mode and mtime so the bytes never vary. */
function tarOneFile(name: string, content: Buffer): Buffer {
  const header = Buffer.alloc(512);
  const put = (value: string, offset: number, length: number): void => {
    header.write(value, offset, Math.min(Buffer.byteLength(value), length), "ascii");
  };
  const octal = (n: number, width: number): string => n.toString(8).padStart(width - 1, "0") + "\0";
  put(name, 0, 100);
  put(octal(0o644, 8), 100, 8);
  put(octal(0, 8), 108, 8);
  put(octal(0, 8), 116, 8);
  put(octal(content.length, 12), 124, 12);
  put(octal(0, 12), 136, 12);
  put("        ", 148, 8);
  put("0", 156, 1);
  put("ustar\0", 257, 6);
  put("00", 263, 2);
  let sum = 0;
  for (const b of header) sum += b;
  put(octal(sum, 7) + " ", 148, 8);
  const padding = Buffer.alloc((512 - (content.length % 512)) % 512);
  return Buffer.concat([header, content, padding, Buffer.alloc(1024)]);
}

function ociArch(): string {
  // containerd matches the config's platform against its own when it unpacks a single manifest.
  return ({ x64: "amd64", arm64: "arm64", arm: "arm", ppc64: "ppc64le", s390x: "s390x" } as Record<string, string>)[process.arch] ?? process.arch;
}

/**
 * Writes a deterministic one-layer OCI image layout (no registry needed to obtain it): the same bytes,
 * hence the same digests, on every run on the same architecture.
 */
export function writeOciImage(dir: string, tag: string): OciLayout {
  const blobs = path.join(dir, "blobs", "sha256");
  fs.mkdirSync(blobs, { recursive: true });
  const putBlob = (b: Buffer): { digest: string; size: number } => {
    const digest = sha256(b);
    fs.writeFileSync(path.join(blobs, digest.slice("sha256:".length)), b);
    return { digest, size: b.length };
  };

  const tar = tarOneFile("registry-trust-lab.txt", Buffer.from("registry-trust lab image\n"));
  const layer = putBlob(gzipSync(tar, { level: 9 }));
  const config = putBlob(
    Buffer.from(
      JSON.stringify({
        architecture: ociArch(),
        os: "linux",
        config: {},
        rootfs: { type: "layers", diff_ids: [sha256(tar)] },
      }),
    ),
  );
  const manifest = putBlob(
    Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: "application/vnd.oci.image.manifest.v1+json",
        config: { mediaType: "application/vnd.oci.image.config.v1+json", ...config },
        layers: [{ mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", ...layer }],
      }),
    ),
  );
  fs.writeFileSync(path.join(dir, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  fs.writeFileSync(
    path.join(dir, "index.json"),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        {
          mediaType: "application/vnd.oci.image.manifest.v1+json",
          ...manifest,
          annotations: { "org.opencontainers.image.ref.name": tag },
        },
      ],
    }),
  );
  return { dir, tag, manifestDigest: manifest.digest };
}
