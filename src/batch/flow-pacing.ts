import { FlowLimitError, NotFoundError } from "../errors.js";

/**
 * Step of a batch after one of its messages failed. With `wait`, the message
 * tries again after `delayMs`, as flow control requested. With `stop`, the
 * circuit is open or the integration was deleted, so no further message of
 * the batch starts. With `final`, the failure is the message's result.
 */
export type PacingDecision = { kind: "wait"; delayMs: number } | { kind: "stop" } | { kind: "final" };

/**
 * Decides how a batch handles a failed message. A concurrency or rate
 * rejection is a request to slow down, which a batch honours by waiting.
 * So is a half-open circuit whose probe sends are in flight, because the
 * probe soon closes or opens it. An open circuit rejects every send for
 * its whole cool-down, so waiting would only hold the call. A deleted
 * integration fails every further send, so the batch stops without reading
 * it from the database again for each message.
 *
 * NOTE: a gateway's own 429 is final for its message and does not slow the
 * batch, whatever its Retry-After header asks for. The remaining messages are
 * still sent at the pace of the integration's limits.
 */
export function pacingDecision(error: unknown): PacingDecision {
  if (error instanceof NotFoundError) {
    return { kind: "stop" };
  }
  if (!(error instanceof FlowLimitError)) {
    return { kind: "final" };
  }

  const { reason, retryDelayMs, metadata } = error.info;
  if (reason === "CIRCUIT_OPEN" && metadata?.["circuit_state"] !== "half_open") {
    return { kind: "stop" };
  }
  return { kind: "wait", delayMs: retryDelayMs };
}
