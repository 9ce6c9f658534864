import { createHash } from "node:crypto";
import type http from "node:http";
import { gzipSync } from "node:zlib";
import type { HttpRoute } from "./http-routes.js";
import type { RequestHandler } from "./one-port-server.js";

/** One file of the web console, held in memory. */
export interface WebAsset {
  path: string;
  contentType: string;
  body: Buffer;
}

/**
 * Headers on every console response. The policy allows scripts, styles and
 * images from the service's own origin only, and no inline code, so an
 * injected string cannot run. `connect-src 'self'` lets the page call the
 * API on the same origin and nowhere else.
 */
const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  "content-security-policy":
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "cross-origin-opener-policy": "same-origin",
  "cross-origin-resource-policy": "same-origin",
};

/** Assets smaller than this are sent uncompressed: gzip would save less than its header costs. */
const MIN_GZIP_BYTES = 1024;

/** The response methods shared by HTTP/1.1 and HTTP/2 compatibility responses. */
interface PlainResponse {
  writeHead(status: number, headers: http.OutgoingHttpHeaders): unknown;
  end(body?: Buffer | string): unknown;
}

/**
 * Returns one route per asset. Responses carry an ETag and `no-cache`, so
 * browsers revalidate on each load and get a 304 while the service runs the
 * same build. The body is gzipped when the client accepts gzip.
 */
export function staticAssetRoutes(assets: readonly WebAsset[]): HttpRoute[] {
  return assets.map((asset) => {
    const etag = `"${createHash("sha256").update(asset.body).digest("base64url").slice(0, 27)}"`;
    const gzipped = asset.body.length >= MIN_GZIP_BYTES ? gzipSync(asset.body, { level: 9 }) : undefined;
    const headers = {
      ...SECURITY_HEADERS,
      "content-type": asset.contentType,
      "cache-control": "no-cache",
      etag,
      ...(gzipped === undefined ? {} : { vary: "accept-encoding" }),
    };

    const handler: RequestHandler = (request, response) => {
      const reply = response as PlainResponse;
      if (!allowMethod(request.method, reply)) {
        return;
      }
      if (request.headers["if-none-match"]?.split(",").some((tag) => tag.trim() === etag)) {
        reply.writeHead(304, headers);
        reply.end();
        return;
      }

      const useGzip = gzipped !== undefined && acceptsGzip(request.headers["accept-encoding"]);
      const body = useGzip ? gzipped : asset.body;
      reply.writeHead(200, { ...headers, "content-length": body.length, ...(useGzip ? { "content-encoding": "gzip" } : {}) });
      reply.end(request.method === "HEAD" ? undefined : body);
    };
    return { path: asset.path, handler };
  });
}

/** Returns routes that respond with 503 and `reason` on each path, for a console that could not be built. */
export function unavailableRoutes(paths: readonly string[], reason: string): HttpRoute[] {
  const handler: RequestHandler = (request, response) => {
    const reply = response as PlainResponse;
    if (allowMethod(request.method, reply)) {
      reply.writeHead(503, { ...SECURITY_HEADERS, "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" });
      reply.end(request.method === "HEAD" ? undefined : `${reason}\n`);
    }
  };
  return paths.map((path) => ({ path, handler }));
}

/** Responds with 405 and returns false, unless the method is GET or HEAD. */
function allowMethod(method: string | undefined, reply: PlainResponse): boolean {
  if (method === "GET" || method === "HEAD") {
    return true;
  }
  reply.writeHead(405, { ...SECURITY_HEADERS, allow: "GET, HEAD", "content-type": "text/plain; charset=utf-8" });
  reply.end("use GET or HEAD\n");
  return false;
}

/** Returns whether an Accept-Encoding header allows gzip: an explicit `gzip` entry wins over `*`, and `q=0` refuses. */
function acceptsGzip(header: string | undefined): boolean {
  const qualities = new Map<string, number>();
  for (const item of (header ?? "").split(",")) {
    const [coding = "", ...parameters] = item.split(";").map((part) => part.trim().toLowerCase());
    const quality = parameters.find((parameter) => parameter.startsWith("q="));
    qualities.set(coding, quality === undefined ? 1 : Number(quality.slice(2)));
  }
  const gzipQuality = qualities.get("gzip") ?? qualities.get("*") ?? 0;
  return gzipQuality > 0;
}
