import type { RequestHandler } from "./one-port-server.js";

/** A plain HTTP endpoint served on the API port, such as a page of the web console. */
export interface HttpRoute {
  /** Exact request path, without query string, for example `/console.js`. */
  path: string;
  /** Handles every method on that path, and responds with 405 itself to methods it does not serve. */
  handler: RequestHandler;
}

/** The form of an RPC path, `/package.Service/Method`, which routes must not take. */
const RPC_PATH = /^\/[^/]+\.[^/]+\/[^/]+$/;

/**
 * Returns a handler that serves the routes by exact path and passes every
 * other request to `next`, the Connect adapter, so gRPC, Connect and
 * gRPC-Web calls reach it unchanged. Throws when two routes share a path or
 * a route path has the form of an RPC path, because the route would hide it.
 */
export function withHttpRoutes(routes: readonly HttpRoute[], next: RequestHandler): RequestHandler {
  const byPath = new Map<string, RequestHandler>();
  for (const { path, handler } of routes) {
    if (byPath.has(path)) {
      throw new Error(`two HTTP routes for the path ${path}`);
    }
    if (RPC_PATH.test(path)) {
      throw new Error(`HTTP route path ${path} has the form of an RPC path (/package.Service/Method); choose another path`);
    }
    byPath.set(path, handler);
  }

  return (request, response) => {
    const path = (request.url ?? "").split("?", 1)[0] ?? "";
    const handler = byPath.get(path) ?? next;
    handler(request, response);
  };
}
