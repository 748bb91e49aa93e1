/*
 * `tsx lab/cluster-daemon.ts DIR`: keeps the lab cluster (lab/cluster.ts) running until SIGTERM, then
 * stops the Cluster API managers, the garbage-collector stand-in, the apiserver and etcd. They are children
 * of this process (and the stand-in a loop in it), so the cluster needs a process that outlives
 * `lab start`; lab/cli.ts starts this one detached.
 */
import { startCluster } from "./cluster";

async function main(): Promise<void> {
  const dir = process.argv[2];
  if (!dir) throw new Error("usage: lab/cluster-daemon.ts DIR");
  const cluster = await startCluster(dir);
  process.stdout.write(`cluster ready: ${cluster.description.server}\n`);
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    cluster.stop().then(() => process.exit(0), (e: unknown) => {
      process.stderr.write(`cluster stop failed: ${String(e)}\n`);
      process.exit(1);
    });
  };
  for (const sig of ["SIGTERM", "SIGINT", "SIGHUP"] as const) process.on(sig, stop);
  // Nothing else keeps the event loop alive once the controllers are idle between writes.
  setInterval(() => undefined, 1 << 30);
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
