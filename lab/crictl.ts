/**
 * A crictl-compatible shim for lab nodes (crictl is not packaged in Debian bookworm). It implements
 * only `pull`, `images`, `rmi` and `version`, through the same CRI client the tests use, so a script
 * running ON a node can check a pull along the kubelet's path. Not a replacement for crictl.
 */
import { CriClient, CriError } from "./cri-client";

const USAGE = "usage: crictl [-r ENDPOINT] pull IMAGE | images [-q] | rmi IMAGE... | version";

function socketFrom(endpoint: string): string {
  return endpoint.replace(/^unix:\/\//, "");
}

async function main(argv: string[]): Promise<number> {
  let endpoint = process.env.CONTAINER_RUNTIME_ENDPOINT || "unix:///run/containerd/containerd.sock";
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "-r" || a === "--runtime-endpoint" || a === "-i" || a === "--image-endpoint") endpoint = argv[++i] ?? endpoint;
    else if (a.startsWith("--runtime-endpoint=") || a.startsWith("--image-endpoint=")) endpoint = a.slice(a.indexOf("=") + 1);
    else if (a === "-t" || a === "--timeout") i++;
    else if (a === "-D" || a === "--debug" || a.startsWith("--timeout=")) continue;
    else rest.push(a);
  }
  const [command, ...args] = rest;
  const cri = new CriClient(socketFrom(endpoint));
  try {
    switch (command) {
      case "pull": {
        if (args.length !== 1) break;
        const ref = await cri.pullImage(args[0]);
        process.stdout.write(`Image is up to date for ${ref}\n`);
        return 0;
      }
      case "images": {
        const quiet = args.includes("-q") || args.includes("--quiet");
        for (const img of await cri.listImages()) {
          process.stdout.write(quiet ? `${img.id}\n` : `${[...img.repoTags, ...img.repoDigests].join(",")}\t${img.id}\t${img.size}\n`);
        }
        return 0;
      }
      case "rmi": {
        if (args.length === 0) break;
        for (const img of args) {
          await cri.removeImage(img);
          process.stdout.write(`Deleted: ${img}\n`);
        }
        return 0;
      }
      case "version": {
        const v = await cri.version();
        process.stdout.write(`Version:  ${v.version}\nRuntimeName:  ${v.runtimeName}\nRuntimeVersion:  ${v.runtimeVersion}\nRuntimeApiVersion:  ${v.runtimeApiVersion}\n`);
        return 0;
      }
    }
    process.stderr.write(`${USAGE}\n`);
    return 2;
  } catch (e) {
    const verb = command === "pull" ? "pulling image" : command === "rmi" ? "removing image" : command;
    process.stderr.write(`${verb}: ${e instanceof CriError ? e.rpcText : String(e)}\n`);
    return 1;
  } finally {
    cri.close();
  }
}

main(process.argv.slice(2)).then((code) => process.exit(code));
