import { PolicyPack } from "@pulumi/policy";
import { caOverlapRetention } from "./policies/ca-overlap-retention";
import { insecureRegistrySettings } from "./policies/insecure-registry-settings";
import { keyStrength } from "./policies/key-strength";
import { maxValidity } from "./policies/max-validity";
import { servingSans } from "./policies/serving-sans";
import { sshHostKeysOptOut, sshHostKeysPinned } from "./policies/ssh-host-keys";
import { captureStackConfig } from "./stack-config";

// Before the PolicyPack starts its server: the production rules depend on the stack config it receives.
captureStackConfig();

new PolicyPack("registry-trust", {
  policies: [insecureRegistrySettings, sshHostKeysPinned, sshHostKeysOptOut, caOverlapRetention, keyStrength, maxValidity, servingSans],
});
