import type { FetchedToken } from "../dispatch/dispatcher.js";

/** Maximum time before expiry at which a cached token is refreshed. */
const MAX_REFRESH_SKEW_MS = 30_000;
/** Share of a token's lifetime refreshed early, so a short-lived token is still used for most of its life. */
const REFRESH_SKEW_SHARE = 0.1;

/** When a fetched token stops being reused, and where that time came from. */
export interface TokenExpiry {
  /** Time (epoch milliseconds) from which the token is fetched again; at or before `now` means never reuse. */
  refreshAtMs: number;
  /** True when the auth reply set the expiry (`expires_in` or a JWT `exp`), not the configuration. */
  fromReply: boolean;
}

/**
 * Computes when a token from `auth_url` must be refreshed.
 *
 * The lifetime comes from the first of: the reply's `expires_in` (seconds),
 * the token's JWT `exp` claim, and `configuredSeconds`. The refresh comes a
 * little before expiry (10% of the lifetime, at most 30 s), so a request
 * does not carry a token that expires on the way.
 */
export function tokenExpiry(fetched: FetchedToken, configuredSeconds: number, nowMs: number): TokenExpiry {
  let expiresAtMs: number;
  let fromReply = true;
  if (fetched.expiresInSeconds !== undefined) {
    expiresAtMs = nowMs + fetched.expiresInSeconds * 1000;
  } else {
    const expSeconds = readJwtExpiry(fetched.token);
    if (expSeconds !== undefined) {
      expiresAtMs = expSeconds * 1000;
    } else {
      expiresAtMs = nowMs + configuredSeconds * 1000;
      fromReply = false;
    }
  }

  const lifetimeMs = expiresAtMs - nowMs;
  const skewMs = Math.min(MAX_REFRESH_SKEW_MS, lifetimeMs * REFRESH_SKEW_SHARE);
  return { refreshAtMs: lifetimeMs > 0 ? expiresAtMs - skewMs : nowMs, fromReply };
}

/**
 * Reads the `exp` claim (epoch seconds) of a JWT without verifying its
 * signature. The service only uses it to decide when to fetch a new token,
 * so a forged value can at worst cause an early refresh or a 401, which
 * refreshes the token. Returns `undefined` when the token is not a JWT with
 * a numeric `exp`.
 */
export function readJwtExpiry(token: string): number | undefined {
  const parts = token.split(".");
  if (parts.length !== 3 || parts[1] === undefined || !/^[A-Za-z0-9_-]+$/.test(parts[1])) {
    return undefined;
  }
  let claims: unknown;
  try {
    claims = JSON.parse(Buffer.from(parts[1], "base64url").toString("utf8"));
  } catch {
    return undefined;
  }
  if (typeof claims !== "object" || claims === null || Array.isArray(claims)) {
    return undefined;
  }
  const exp = (claims as Record<string, unknown>)["exp"];
  return typeof exp === "number" && Number.isFinite(exp) ? exp : undefined;
}
