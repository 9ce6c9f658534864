import type { IncomingMessage } from "node:http";
import type { Http2ServerRequest } from "node:http2";

/** Returns the path of a request's URL, without its query. */
export function pathOf(request: IncomingMessage | Http2ServerRequest): string {
  const url = request.url ?? "/";
  const query = url.indexOf("?");
  return query === -1 ? url : url.slice(0, query);
}

/** Returns the first value of a request header that Node gives as a string or a list. */
export function firstValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
