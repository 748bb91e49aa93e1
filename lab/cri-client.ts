import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import * as path from "node:path";

export interface CriVersion {
  version: string;
  runtimeName: string;
  runtimeVersion: string;
  runtimeApiVersion: string;
}

export interface CriImage {
  id: string;
  repoTags: string[];
  repoDigests: string[];
  size: string;
}

/** A CRI error keeps the runtime's own message (e.g. containerd's x509 text) in `details`. */
export class CriError extends Error {
  /** Formatted like Go's gRPC errors, as crictl and the kubelet print them. */
  readonly rpcText: string;

  constructor(
    readonly method: string,
    readonly code: grpc.status,
    readonly details: string,
  ) {
    const rpcText = `rpc error: code = ${goCodeName(code)} desc = ${details}`;
    super(`${method}: ${rpcText}`);
    this.rpcText = rpcText;
  }
}

/** Go's codes.Code names (DEADLINE_EXCEEDED → DeadlineExceeded), as crictl prints them. */
function goCodeName(code: grpc.status): string {
  const name = grpc.status[code] ?? String(code);
  return name === "OK" ? name : name.toLowerCase().replace(/(^|_)([a-z])/g, (_, __, c: string) => c.toUpperCase());
}

type Unary = (req: object, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: unknown) => void) => void;

let services: { RuntimeService: grpc.ServiceClientConstructor; ImageService: grpc.ServiceClientConstructor } | undefined;

function loadServices(): NonNullable<typeof services> {
  if (!services) {
    const def = protoLoader.loadSync(path.join(__dirname, "cri.proto"), { keepCase: false, longs: String, defaults: true });
    const pkg = grpc.loadPackageDefinition(def) as unknown as {
      runtime: { v1: { RuntimeService: grpc.ServiceClientConstructor; ImageService: grpc.ServiceClientConstructor } };
    };
    services = pkg.runtime.v1;
  }
  return services;
}

/**
 * Talks CRI (runtime.v1) to a container runtime's socket, the way the kubelet and crictl do. This is
 * the only valid check that the runtime's registry configuration (certs.d/hosts.toml) works: `ctr`
 * resolves registries client-side and ignores it.
 */
export class CriClient {
  private readonly runtime: grpc.Client;
  private readonly images: grpc.Client;

  constructor(
    readonly socketPath: string,
    private readonly timeoutMs = 30_000,
  ) {
    const { RuntimeService, ImageService } = loadServices();
    const target = `unix://${socketPath}`;
    const creds = grpc.credentials.createInsecure();
    this.runtime = new RuntimeService(target, creds);
    // Share the runtime client's channel rather than opening a second connection.
    this.images = new ImageService(target, creds, { channelOverride: this.runtime.getChannel() });
  }

  version(): Promise<CriVersion> {
    return this.call(this.runtime, "Version", { version: "v1" });
  }

  async pullImage(image: string): Promise<string> {
    const res = await this.call<{ imageRef: string }>(this.images, "PullImage", { image: { image } });
    return res.imageRef;
  }

  async listImages(): Promise<CriImage[]> {
    const res = await this.call<{ images: CriImage[] }>(this.images, "ListImages", {});
    return res.images;
  }

  async removeImage(image: string): Promise<void> {
    await this.call(this.images, "RemoveImage", { image: { image } });
  }

  close(): void {
    this.images.close();
    this.runtime.close();
  }

  private call<T>(client: grpc.Client, method: string, req: object): Promise<T> {
    const fn = (client as unknown as Record<string, Unary>)[method].bind(client);
    return new Promise((resolve, reject) => {
      fn(req, { deadline: Date.now() + this.timeoutMs }, (err, res) => {
        if (err) reject(new CriError(method, err.code, err.details));
        else resolve(res as T);
      });
    });
  }
}
