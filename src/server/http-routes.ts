import type { RequestHandler } from "./one-port-server.js";

/** A plain HTTP endpoint served on the API port, such as a page of the web console. */
export interface HttpRoute {
  /** Exact request path, without query string, for example `/console.js`. */
  path: string;
  /** Handles every method on that path; it answers 405 itself for methods it does not serve. */
  handler: RequestHandler;
}

/**
 * Returns a handler that serves the routes by exact path and passes every
 * other request to `next`, the Connect adapter, so gRPC, Connect and
 * gRPC-Web calls reach it unchanged. RPC paths have the form
 * `/package.Service/Method`, so they cannot collide with a route path
 * without a dot-qualified service name. Throws when two routes share a path.
 */
export function withHttpRoutes(routes: readonly HttpRoute[], next: RequestHandler): RequestHandler {
  const byPath = new Map<string, RequestHandler>();
  for (const { path, handler } of routes) {
    if (byPath.has(path)) {
      throw new Error(`two HTTP routes for the path ${path}`);
    }
    byPath.set(path, handler);
  }

  return (request, response) => {
    const path = (request.url ?? "").split("?", 1)[0] ?? "";
    const handler = byPath.get(path) ?? next;
    handler(request, response);
  };
}
