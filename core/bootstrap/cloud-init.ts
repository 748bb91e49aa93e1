import { stringify } from "yaml";
import { renderNodeScript } from "../node/render";
import { NodeScriptInput } from "../node/types";

/*
 * Trust for nodes that boot without anyone SSHing in (autoscaled nodes outside Cluster API): a
 * `#cloud-config` fragment that writes the rendered node install script with write_files and runs it from
 * runcmd. The script is renderNodeScript's, unchanged, so a boot-time install gets the same validation,
 * conflict refusal, atomic writes, verification and rollback as an SSH install (incident 2: new nodes
 * that never received the CA).
 */

/** Where write_files puts the install script. /run is writable on every OS family (Flatcar's /usr is read-only) and is emptied at the next boot: the script is needed once, in the boot that installs. */
export const CLOUD_INIT_SCRIPT_DIR = "/run/registry-trust";

export interface CloudInitInput extends Omit<NodeScriptInput, "action" | "probeTls" | "probeImage"> {
  /**
   * Probe https://<registry>/v2/ through the installed trust during boot. Off by default: runcmd can run
   * before DNS or routes to the registry are up, and a failed probe rolls the whole install back, leaving
   * the node with no trust at all. The offline check (openssl verify of servingChainPem against the
   * installed bundle) needs no network and always runs when servingChainPem is given, so pass it.
   * @default false
   */
  readonly probeTls?: boolean;
  /** Image pulled through CRI to verify, during boot (same caveat as probeTls; also pulls it early). @default none */
  readonly probeImage?: string;
}

/** The fragment as data (what `yaml` serializes) plus its text. */
export interface CloudInitFragment {
  /** `#cloud-config` text, ready for user-data or as one part of a MIME multi-part user-data. */
  readonly text: string;
  /** Absolute path of the install script on the node. */
  readonly scriptPath: string;
  /** The rendered install script written to scriptPath. */
  readonly script: string;
}

/**
 * Renders the cloud-init fragment that installs the trust at first boot (runcmd runs once per instance).
 * Throws NodeScriptError, listing every problem, for input renderNodeScript refuses.
 *
 * Combining with other user-data: as its own part of a MIME multi-part user-data, placed after the part
 * that holds `kubeadm join` (or whatever starts pulling). Its `merge_how` prepends its lists, so its
 * write_files and runcmd entries run before the earlier parts' entries instead of replacing them
 * (cloud-init's default merge replaces lists). Put in the same cloud-config by hand, list its runcmd
 * entry before the join.
 */
export function renderCloudInit(input: CloudInitInput): CloudInitFragment {
  const script = renderNodeScript({ ...input, action: "install", probeTls: input.probeTls ?? false, probeImage: input.probeImage });
  const scriptPath = `${CLOUD_INIT_SCRIPT_DIR}/install-${input.owner ?? "default"}.sh`;
  const config = {
    merge_how: [
      { name: "list", settings: ["prepend"] },
      { name: "dict", settings: ["no_replace", "recurse_list"] },
    ],
    write_files: [
      // b64: the script arrives byte for byte whatever YAML style a tool that re-serializes user-data uses.
      { path: scriptPath, owner: "root:root", permissions: "0700", encoding: "b64", content: Buffer.from(script).toString("base64") },
    ],
    // The list form is exec'd without a shell. A non-zero exit (the script rolled back) fails runcmd, which
    // `cloud-init status` reports as an error; the script's stderr lands in /var/log/cloud-init-output.log.
    runcmd: [["sh", scriptPath]],
  };
  return { text: `#cloud-config\n${stringify(config, { lineWidth: 0 })}`, scriptPath, script };
}
