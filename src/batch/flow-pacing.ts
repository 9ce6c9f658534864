import { FlowLimitError, GatewayError, NotFoundError } from "../errors.js";

/**
 * Step of a batch after one of its messages failed. With `wait`, the message
 * tries again after `delayMs`, as flow control requested. With `stop`, the
 * circuit is open or the integration was deleted, so no further message of
 * the batch starts. With `final`, the failure is the message's result.
 *
 * `pause` and `halt` follow a gateway's 429 with a `Retry-After`, and the
 * failure is the message's result. With `pause`, no message of the batch
 * starts for `delayMs`. With `halt`, none starts again, because the gateway
 * requested a longer wait than the service makes itself.
 */
export type PacingDecision =
  | { kind: "wait"; delayMs: number }
  | { kind: "stop" }
  | { kind: "final" }
  | { kind: "pause"; delayMs: number }
  | { kind: "halt"; delayMs: number };

/**
 * Decides how a batch handles a failed message. A concurrency or rate
 * rejection is a request to slow down, which a batch honours by waiting.
 * So is a half-open circuit whose probe sends are in flight, because the
 * probe soon closes or opens it. An open circuit rejects every send for
 * its whole cool-down, so waiting would only hold the call. A deleted
 * integration fails every further send, so the batch stops without reading
 * it from the database again for each message.
 *
 * A gateway that replied 429 with a `Retry-After` requests a slower pace too. The message already made the retries that RETRY_AFTER_MAX_MS
 * and SEND_MAX_ATTEMPTS allow, so its failure is its result, and the batch sends
 * nothing more until the wait has passed. When the wait is longer than
 * `gatewayWaitMaxMs`, the batch would hold the call for it, so it starts no
 * further message. A 429 without `Retry-After` gives no time to wait, so it
 * is final for its message only.
 *
 * NOTE: the wait holds only the batch that got the 429. SendSms calls and
 * other batches through the same integration go on sending during it.
 */
export function pacingDecision(error: unknown, gatewayWaitMaxMs: number): PacingDecision {
  if (error instanceof NotFoundError) {
    return { kind: "stop" };
  }
  if (error instanceof GatewayError) {
    return gatewayDecision(error, gatewayWaitMaxMs);
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

function gatewayDecision(error: GatewayError, gatewayWaitMaxMs: number): PacingDecision {
  const { httpStatus, retryAfterSeconds } = error.info;
  // A 429 is never kept as a key's final outcome, so a replayed one is the reply that a
  // concurrent call with the same key got a moment ago, and its wait applies now.
  if (httpStatus !== 429 || retryAfterSeconds === undefined) {
    return { kind: "final" };
  }
  const delayMs = retryAfterSeconds * 1000;
  return delayMs > gatewayWaitMaxMs ? { kind: "halt", delayMs } : { kind: "pause", delayMs };
}
