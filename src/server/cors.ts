import { cors as connectCors } from "@connectrpc/connect";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";

/** Request headers a browser may send: Connect's and gRPC-Web's, plus the service's own. */
const ALLOWED_HEADERS = unique([...connectCors.allowedHeaders, "Authorization", "X-Request-Id"]);

/** Response headers a browser script may read, so it can show the real error code, details and request id. */
const EXPOSED_HEADERS = unique([...connectCors.exposedHeaders, "X-Request-Id", "Retry-After"]);

const ALLOWED_METHODS = unique([...connectCors.allowedMethods]);

/** How long a browser may cache a preflight response, in seconds. */
const PREFLIGHT_MAX_AGE_SECONDS = 7200;

/**
 * Cross-origin access for browser clients (Connect and gRPC-Web).
 *
 * With no allowed origins the service sends no CORS headers at all, so
 * browsers on other origins cannot call it. `*` allows every origin without
 * credentials; otherwise the request's `Origin` is echoed back when it is
 * one of the listed origins.
 */
export class CorsPolicy {
  private readonly anyOrigin: boolean;
  private readonly origins: ReadonlySet<string>;

  constructor(allowedOrigins: readonly string[]) {
    this.anyOrigin = allowedOrigins.includes("*");
    this.origins = new Set(allowedOrigins);
  }

  /**
   * Adds the CORS headers to a response, and responds to a preflight
   * request. Returns true when it has responded, so nothing else must.
   */
  apply(
    request: IncomingMessage | Http2ServerRequest,
    response: ServerResponse | Http2ServerResponse,
  ): boolean {
    if (!this.anyOrigin && this.origins.size === 0) {
      return false;
    }
    const origin = request.headers.origin;
    const isPreflight = request.method === "OPTIONS" && origin !== undefined && request.headers["access-control-request-method"] !== undefined;
    if (!this.anyOrigin) {
      // The response depends on the Origin header, so caches must key on it.
      response.setHeader("Vary", "Origin");
    }

    const allowed = origin !== undefined && (this.anyOrigin || this.origins.has(origin));
    if (allowed) {
      response.setHeader("Access-Control-Allow-Origin", this.anyOrigin ? "*" : origin);
    }
    if (!isPreflight) {
      if (allowed) {
        response.setHeader("Access-Control-Expose-Headers", EXPOSED_HEADERS.join(", "));
      }
      return false;
    }

    // A preflight from an origin that is not allowed gets no CORS headers,
    // so the browser blocks the request it asked about.
    if (allowed) {
      response.setHeader("Access-Control-Allow-Methods", ALLOWED_METHODS.join(", "));
      response.setHeader("Access-Control-Allow-Headers", ALLOWED_HEADERS.join(", "));
      response.setHeader("Access-Control-Max-Age", String(PREFLIGHT_MAX_AGE_SECONDS));
    }
    response.statusCode = 204;
    response.end();
    return true;
  }
}

/**
 * Parses the allowed origins setting: a comma-separated list of origins
 * (`https://app.example.com`, `http://localhost:5173`), or `*` for any.
 *
 * @throws Error naming the first entry that is not an origin.
 */
export function parseAllowedOrigins(raw: string): string[] {
  const entries = raw
    .split(",")
    .map((entry) => entry.trim())
    .filter((entry) => entry !== "");
  for (const entry of entries) {
    if (entry !== "*" && originOf(entry) !== entry) {
      throw new Error(
        `"${entry}" is not an origin: write scheme://host[:port] in lower case without a path or trailing slash, for example https://app.example.com, or * for any origin`,
      );
    }
  }
  return entries;
}

function originOf(text: string): string | undefined {
  try {
    const url = new URL(text);
    return url.protocol === "http:" || url.protocol === "https:" ? url.origin : undefined;
  } catch {
    return undefined;
  }
}

function unique(names: string[]): string[] {
  const seen = new Set<string>();
  return names.filter((name) => {
    const key = name.toLowerCase();
    if (seen.has(key)) {
      return false;
    }
    seen.add(key);
    return true;
  });
}
