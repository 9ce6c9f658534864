/**
 * Time a caller that honours the `retry-after` header may take beyond the
 * header's whole seconds to send again: its own round trip and a late timer.
 * NOTE: 500 ms is an estimate, not a measurement. A caller that takes longer
 * to come back misses the kept slot or token and is rejected again.
 */
export const RETRY_AFTER_MARGIN_MS = 500;

/**
 * Returns the `retry-after` header value for a retry delay: whole seconds,
 * rounded up. A flow-control rejection gives its delay in two forms, this
 * header and the exact `RetryInfo` delay, and both come from one `retryDelayMs`.
 */
export function retryAfterSeconds(retryDelayMs: number): number {
  return Math.ceil(retryDelayMs / 1000);
}

/**
 * Returns how long a slot or a rate-limit token is kept for a direct send
 * whose rejection gave `retryDelayMs`: twice the `RetryInfo` delay, or the
 * `retry-after` seconds plus {@link RETRY_AFTER_MARGIN_MS}, whichever is
 * longer. So the caller finds it whichever form of the delay it follows.
 * It is also the longest a kept slot or token stays unused when the caller
 * never comes back.
 */
export function keptForRetryMs(retryDelayMs: number): number {
  return Math.max(2 * retryDelayMs, retryAfterSeconds(retryDelayMs) * 1000 + RETRY_AFTER_MARGIN_MS);
}
