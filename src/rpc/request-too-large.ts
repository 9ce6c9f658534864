import { Code, ConnectError } from "@connectrpc/connect";

/**
 * Returns the RESOURCE_EXHAUSTED error for a request message over
 * `maxBytes`, the service's MAX_REQUEST_BYTES, naming the setting that
 * raises it. Every server of the port fails an oversized request with it.
 */
export function requestTooLarge(maxBytes: number, declaredBytes?: number): ConnectError {
  const size = declaredBytes === undefined ? "" : ` of ${declaredBytes} bytes`;
  return new ConnectError(
    `the request message${size} is larger than MAX_REQUEST_BYTES (${maxBytes} bytes); send a smaller request or raise MAX_REQUEST_BYTES`,
    Code.ResourceExhausted,
  );
}
