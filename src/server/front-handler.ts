import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import type { Logger } from "pino";
import type { ServiceMetrics } from "../observability/metrics.js";
import { REQUEST_ID_HEADER, resolveRequestId } from "../observability/request-id.js";
import type { CorsPolicy } from "./cors.js";
import { isLoopbackAuthority } from "./loopback-host.js";
import type { RequestHandler } from "./one-port-server.js";
import type { ReadinessProbe } from "./readiness.js";
import { firstValue, pathOf } from "./request-parts.js";

type AnyRequest = IncomingMessage | Http2ServerRequest;
type AnyResponse = ServerResponse | Http2ServerResponse;

/** The parts the front handler puts in front of the RPC handler. */
export interface FrontHandlerOptions {
  /** The Connect adapter that serves gRPC, Connect and gRPC-Web. */
  rpc: RequestHandler;
  readiness: ReadinessProbe;
  metrics: ServiceMetrics;
  cors: CorsPolicy;
  logger: Logger;
  /**
   * Serve only requests addressed to a loopback name (see
   * `isLoopbackAuthority`). Set while caller authentication is off, which
   * is allowed only on a loopback address, to defeat DNS rebinding.
   */
  loopbackHostsOnly?: boolean;
}

/**
 * Returns the handler of every HTTP request on the service's port.
 *
 * It gives each request a request id (the caller's `x-request-id` when
 * valid), which the response carries and the RPC pipeline reuses. Then it
 * applies CORS, serves `GET /healthz`, `/readyz` and `/metrics`, and hands
 * everything else to the RPC handler.
 */
export function createFrontHandler(options: FrontHandlerOptions): RequestHandler {
  const routes = new Map<string, (response: AnyResponse) => Promise<void>>([
    ["/healthz", (response) => Promise.resolve(sendJson(response, 200, { status: "alive" }))],
    ["/readyz", (response) => serveReadiness(options.readiness, response)],
    ["/metrics", (response) => serveMetrics(options.metrics, response)],
  ]);

  return (request, response) => {
    const requestId = resolveRequestId(firstValue(request.headers[REQUEST_ID_HEADER]));
    request.headers[REQUEST_ID_HEADER] = requestId;
    response.setHeader(REQUEST_ID_HEADER, requestId);

    if (options.loopbackHostsOnly === true) {
      const authority = firstValue(request.headers[":authority"]) ?? firstValue(request.headers.host);
      if (!isLoopbackAuthority(authority)) {
        options.logger.warn({ host: authority?.slice(0, 200), requestId }, "rejected a request addressed to a non-loopback host");
        sendJson(response, 403, {
          error:
            "this service has caller authentication off, so it answers only requests addressed to localhost, " +
            "127.0.0.1 or [::1]; configure API_KEYS to serve other host names",
        });
        return;
      }
    }

    if (options.cors.apply(request, response)) {
      return;
    }

    const route = routes.get(pathOf(request));
    if (route === undefined) {
      options.rpc(request, response);
      return;
    }
    if (request.method !== "GET" && request.method !== "HEAD") {
      response.setHeader("Allow", "GET, HEAD");
      sendJson(response, 405, { error: `method ${request.method ?? ""} not allowed; use GET` });
      return;
    }
    route(response).catch((error: unknown) => {
      options.logger.error({ err: error, path: pathOf(request), requestId }, "operations endpoint failed");
      if (!response.headersSent) {
        sendJson(response, 500, { error: "internal error; the service log has the details" });
      } else {
        response.destroy();
      }
    });
  };
}

async function serveReadiness(readiness: ReadinessProbe, response: AnyResponse): Promise<void> {
  const result = await readiness.check();
  if (result.ready) {
    sendJson(response, 200, { status: "ready" });
  } else {
    sendJson(response, 503, { status: "not_ready", reason: result.reason });
  }
}

async function serveMetrics(metrics: ServiceMetrics, response: AnyResponse): Promise<void> {
  const text = await metrics.render();
  response.statusCode = 200;
  response.setHeader("Content-Type", metrics.contentType);
  response.setHeader("Cache-Control", "no-store");
  response.end(text);
}

function sendJson(response: AnyResponse, status: number, body: unknown): void {
  response.statusCode = status;
  response.setHeader("Content-Type", "application/json");
  response.setHeader("Cache-Control", "no-store");
  response.end(`${JSON.stringify(body)}\n`);
}
