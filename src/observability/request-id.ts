import { randomUUID } from "node:crypto";

/** Request and response header that carries the request id, on every protocol. */
export const REQUEST_ID_HEADER = "x-request-id";

/** A caller-supplied request id is kept when it is short printable ASCII. */
const REQUEST_ID_PATTERN = /^[\x21-\x7e]{1,128}$/;

/**
 * Returns the caller's request id when it is 1 to 128 printable ASCII
 * characters without spaces, else a new random UUID. Keeping the caller's id
 * lets one id follow a request across services; the check keeps log lines
 * and headers clean.
 */
export function resolveRequestId(supplied: string | null | undefined): string {
  return supplied !== null && supplied !== undefined && REQUEST_ID_PATTERN.test(supplied) ? supplied : randomUUID();
}
