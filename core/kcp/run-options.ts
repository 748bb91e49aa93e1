/** The provider inputs every Cluster API trust sequencer run is tuned by (ControlPlaneTrust, WorkerTrust). */
export interface RunInputs {
  /** Lease holder prefix: the stack. */
  readonly holder: string;
  readonly adopt?: boolean;
  readonly waitForRollout?: boolean;
  readonly rolloutTimeoutSeconds?: number;
  readonly leaseWaitTimeoutSeconds?: number;
  readonly conflictDeadlineSeconds?: number;
}

const ms = (seconds: number | undefined) => (seconds === undefined ? undefined : seconds * 1000);

/** Sequencer options for one provider call; `runId` makes the Lease holder unique per call. */
export function runOptions(inputs: RunInputs, runId: string) {
  return {
    holder: `${inputs.holder}/${runId}`,
    // Entries are owned per stack (core/kcp/plan.ts ownershipKey), so that two stacks sharing an object keep each other's.
    owner: inputs.holder,
    adopt: inputs.adopt,
    lease: { waitTimeoutMs: ms(inputs.leaseWaitTimeoutSeconds) },
    conflict: { deadlineMs: ms(inputs.conflictDeadlineSeconds) },
    rollout: { wait: inputs.waitForRollout, timeoutMs: ms(inputs.rolloutTimeoutSeconds) },
  };
}
