import { parseRfc2822 } from "./gateway-date.js";

const DELAY_SECONDS = /^[0-9]+$/;

/**
 * Maximum wait that {@link parseRetryAfter} returns: 2^31 - 1 seconds, about
 * 68 years. RFC 9110 allows delay-seconds of any length, so a longer valid
 * wait is cut to this value instead of being ignored. It is far above any wait
 * that the service makes itself (`RETRY_AFTER_MAX_MS` is at most 600 s), and
 * it fits the 32-bit integer into which a caller may parse `retry-after`.
 */
export const MAX_RETRY_AFTER_SECONDS = 2_147_483_647;

/**
 * Parses a `Retry-After` header into the number of seconds to wait, at most
 * {@link MAX_RETRY_AFTER_SECONDS}.
 *
 * The header is either a delay in seconds or an HTTP date (IMF-fixdate, such
 * as `Sun, 06 Nov 1994 08:49:37 GMT`). A date in the past gives 0. Returns
 * `undefined` for a missing or unparseable header.
 *
 * NOTE: the obsolete RFC 850 and asctime date forms that RFC 9110 requires
 * recipients to accept are not parsed and give `undefined`.
 */
export function parseRetryAfter(header: string | string[] | undefined, nowMs: number): number | undefined {
  const value = (Array.isArray(header) ? header[0] : header)?.trim();
  if (value === undefined || value === "") {
    return undefined;
  }
  if (DELAY_SECONDS.test(value)) {
    // Number() of a very long run of digits is inexact or Infinity, which the cap replaces.
    return Math.min(Number(value), MAX_RETRY_AFTER_SECONDS);
  }
  const date = parseRfc2822(value);
  if (date === undefined) {
    return undefined;
  }
  return Math.min(Math.max(0, Math.ceil((date.getTime() - nowMs) / 1000)), MAX_RETRY_AFTER_SECONDS);
}
