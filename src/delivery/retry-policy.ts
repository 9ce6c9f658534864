import type { GatewayErrorInfo } from "../errors.js";

/** Retry settings of a send. The config module owns their defaults. */
export interface RetrySettings {
  /** Maximum SMS attempts of one send, the first included (`SEND_MAX_ATTEMPTS`). */
  maxAttempts: number;
  /** Time one attempt may take when the send has an idempotency key (`SEND_ATTEMPT_TIMEOUT_MS`). */
  attemptTimeoutMs: number;
  /** Backoff cap of the first retry, doubled for each further one (`RETRY_BASE_DELAY_MS`). */
  baseDelayMs: number;
  /** Largest backoff cap (`RETRY_MAX_DELAY_MS`). */
  maxDelayMs: number;
  /** Longest `Retry-After` wait honoured before a retry (`RETRY_AFTER_MAX_MS`). */
  retryAfterMaxMs: number;
}

/**
 * Shortest time an attempt needs after a wait. A retry that would leave
 * less of the deadline is not made, because it could only time out, and a
 * request that times out after it was written leaves the outcome unknown.
 */
export const MIN_ATTEMPT_MS = 100;

/**
 * Whether a failed attempt may be repeated:
 * `safe` the gateway cannot have sent the SMS (no SMS request was written,
 * or the gateway replied 408, 429 or 503); `needs_key` it may have, so only a
 * request with an idempotency key is repeated; `never` repeating cannot help.
 */
export type RetrySafety = "safe" | "needs_key" | "never";

/** Reason a send stopped retrying. */
export type StopReason =
  | "not_retryable"
  | "no_idempotency_key"
  | "attempt_limit"
  | "deadline"
  | "retry_after_too_long";

/** The step after a failed attempt: a retry after a delay, or a stop with its reason. */
export type RetryDecision = { retry: true; delayMs: number } | { retry: false; reason: StopReason };

/** Facts of the send at the time of the decision. */
export interface RetryState {
  /** Attempts made so far, counted against `maxAttempts`. */
  attempts: number;
  hasIdempotencyKey: boolean;
  /** Milliseconds left before the send's deadline, 0 or less when it has passed. */
  remainingMs: number;
}

/** Classifies a failed attempt by whether repeating it could send the SMS twice. */
export function retrySafety(info: GatewayErrorInfo): RetrySafety {
  if (info.failure === "canceled") {
    return "never";
  }
  if (info.stage === "auth") {
    // No SMS request was made, so a repeat is safe whenever it can help.
    return info.failure === "timeout" || info.failure === "unavailable" || info.failure === "rate_limited"
      ? "safe"
      : "never";
  }
  // 408 Request Timeout, like 503, means that the gateway did not process the request.
  if (info.httpStatus === 408 || info.httpStatus === 429 || info.httpStatus === 503) {
    return "safe";
  }
  if (info.httpStatus === 500 || info.httpStatus === 502 || info.httpStatus === 504) {
    return "needs_key";
  }
  if (info.httpStatus === 0 && (info.failure === "timeout" || info.failure === "unavailable")) {
    // NOTE: a request written to a kept-alive connection that the gateway
    // closed at that moment fails here as outcome unknown, although the
    // gateway never read it. Nothing on the client tells that apart from a
    // gateway that read the request and then reset, so it needs a key too.
    return info.outcomeUnknown === true ? "needs_key" : "safe";
  }
  return "never";
}

/**
 * Decides whether to retry after a failed attempt, and how long to wait.
 *
 * The wait is the gateway's `Retry-After` when it sent a valid one,
 * otherwise exponential backoff with full jitter: a random time up to
 * `baseDelayMs * 2^(attempts - 1)`, capped at `maxDelayMs`. No retry is made
 * when the wait and a minimal attempt would pass the deadline, or when
 * `Retry-After` requests a longer wait than `retryAfterMaxMs`.
 *
 * @param random returns a number in [0, 1), as `Math.random` does.
 */
export function decideRetry(
  info: GatewayErrorInfo,
  state: RetryState,
  settings: RetrySettings,
  random: () => number,
): RetryDecision {
  const safety = retrySafety(info);
  if (safety === "never") {
    return { retry: false, reason: "not_retryable" };
  }
  if (safety === "needs_key" && !state.hasIdempotencyKey) {
    return { retry: false, reason: "no_idempotency_key" };
  }
  if (state.attempts >= settings.maxAttempts) {
    return { retry: false, reason: "attempt_limit" };
  }

  let delayMs: number;
  if (info.retryAfterSeconds !== undefined) {
    delayMs = info.retryAfterSeconds * 1000;
    if (delayMs > settings.retryAfterMaxMs) {
      return { retry: false, reason: "retry_after_too_long" };
    }
  } else {
    delayMs = Math.floor(random() * backoffCapMs(state.attempts, settings));
  }

  if (delayMs + MIN_ATTEMPT_MS > state.remainingMs) {
    return { retry: false, reason: "deadline" };
  }
  return { retry: true, delayMs };
}

/** Returns the longest backoff after `attempts` attempts: the base delay doubled per retry, capped. */
export function backoffCapMs(attempts: number, settings: RetrySettings): number {
  const exponent = Math.min(Math.max(attempts - 1, 0), 30);
  return Math.min(settings.maxDelayMs, settings.baseDelayMs * 2 ** exponent);
}
