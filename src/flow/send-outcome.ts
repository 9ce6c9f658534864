import { GatewayError, StoppedBeforeRequestError } from "../errors.js";
import type { SendOutcome } from "./circuit-breaker.js";

/**
 * Classifies a finished send for the circuit breaker, which tracks whether
 * the gateway is up, not whether the request was right.
 *
 * - `failure`: the gateway is down or too slow. A 5xx or 408 reply or a
 *   connection failure (`unavailable`), or a `timeout` of a send that had
 *   the full `SEND_TIMEOUT_MS`. A timeout under a shorter caller deadline is
 *   ignored, so that one impatient caller cannot open the circuit for all.
 * - `success`: the gateway replied with a 3xx or a 4xx other than 408 (429
 *   too), or a token reply without a token. The caller or the integration must
 *   change something, but the gateway is up. A send that returns is a
 *   success too, which the caller records without calling this.
 * - `ignored`: the outcome tells nothing about the gateway's health. No request was
 *   made (`attempts` 0, as after shutdown or a deadline that passed before
 *   the first request), the caller canceled, or the error is our own, such
 *   as an invalid passthrough header or a bug.
 *
 * @param error what the send threw.
 * @param deadlineCutShort true when the caller's deadline was below
 *   `SEND_TIMEOUT_MS`, so a timeout may be the caller's doing.
 */
export function classifySendOutcome(error: unknown, deadlineCutShort: boolean): SendOutcome {
  if (!(error instanceof GatewayError) || error.info.attempts === 0) {
    return "ignored";
  }

  switch (error.info.failure) {
    case "unavailable":
      return "failure";
    case "timeout":
      return deadlineCutShort ? "ignored" : "failure";
    case "canceled":
      return "ignored";
    case "credentials_refused":
    case "rejected":
    case "redirected":
    case "invalid_auth_reply":
    case "rate_limited":
      return "success";
  }
}

/**
 * Tests whether a failed send wrote no SMS request, so that it used none of
 * the integration's rate limit. That is so when it stopped right before its
 * first SMS request (`StoppedBeforeRequestError`), or failed with `attempts`
 * 0: canceled, out of time, stopped by the shutdown, or unable to resolve
 * the gateway's host name before its first request. A failed token request
 * to `auth_url` counts its rounds as attempts, so such a send does not
 * qualify. Neither does an `OutboundBlockedError`, because the connector
 * may raise it on a retry after an earlier request went out.
 */
export function sentNoSmsRequest(error: unknown): boolean {
  return error instanceof StoppedBeforeRequestError || (error instanceof GatewayError && error.info.attempts === 0);
}
