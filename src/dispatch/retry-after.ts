import { parseRfc2822 } from "./gateway-date.js";

const DELAY_SECONDS = /^[0-9]+$/;

/**
 * Parses a `Retry-After` header into the number of seconds to wait.
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
    const seconds = Number(value);
    return Number.isSafeInteger(seconds) ? seconds : undefined;
  }
  const date = parseRfc2822(value);
  if (date === undefined) {
    return undefined;
  }
  return Math.max(0, Math.ceil((date.getTime() - nowMs) / 1000));
}
