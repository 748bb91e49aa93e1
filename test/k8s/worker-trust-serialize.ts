// Run by worker-trust-provider.test.ts under ts-node / tsx: serializes the WorkerTrust dynamic provider the
// way pulumi.dynamic.Resource does and prints the module text Pulumi would store in the state.
import * as pulumi from "@pulumi/pulumi";
import { workerTrustProvider } from "../../components/worker-trust-provider";

pulumi.runtime
  .serializeFunction(() => workerTrustProvider, { allowSecrets: true })
  .then((s) => process.stdout.write(s.text))
  .catch((e) => {
    console.error(e);
    process.exit(1);
  });
