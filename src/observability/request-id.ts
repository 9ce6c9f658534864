import { AsyncLocalStorage } from "node:async_hooks";
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

const currentCall = new AsyncLocalStorage<string>();

/**
 * Runs `work` with `requestId` as the current request id. Every log line
 * written while it runs, in awaited callbacks too, carries the id through
 * {@link requestIdMixin}, so code deep in a call (the dispatcher, the store)
 * logs it without being handed a logger.
 */
export function runWithRequestId<T>(requestId: string, work: () => T): T {
  return currentCall.run(requestId, work);
}

/** Returns the request id of the call being handled, or undefined outside a call. */
export function currentRequestId(): string | undefined {
  return currentCall.getStore();
}

/** pino `mixin` that adds `requestId` to each line written during a call. */
export function requestIdMixin(): { requestId?: string } {
  const requestId = currentCall.getStore();
  return requestId === undefined ? {} : { requestId };
}
