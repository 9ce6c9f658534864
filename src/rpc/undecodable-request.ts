import { Code, ConnectError } from "@connectrpc/connect";
import type { JsonErrorLocation } from "./json-error-path.js";

/**
 * Stands in for a request message that protobuf could not decode. The
 * server adapters pass it through the pipeline with
 * {@link rejectUndecodable} as the handler, so such a call is
 * authenticated, logged and counted like any other.
 */
export class UndecodableRequest {
  constructor(
    readonly error: unknown,
    /** Location of the JSON decoding failure, when it was looked for. */
    readonly location?: JsonErrorLocation,
  ) {}
}

/** Fails a call whose request bytes are not a valid message: INVALID_ARGUMENT, naming protobuf's reason. */
export async function rejectUndecodable(request: UndecodableRequest): Promise<never> {
  throw undecodableError(request);
}

/**
 * Returns the INVALID_ARGUMENT error for a request message that could not be
 * decoded. For JSON, a wrong value is described by its JSON type alone,
 * because protobuf's own message quotes the value, which may be a secret or
 * a phone number. A FieldMask of field names is the exception that
 * {@link JsonErrorLocation.problem} describes. protobuf's message is kept for a wrong key, such as an
 * unknown one, and for binary messages, whose messages quote no value.
 */
export function undecodableError(request: UndecodableRequest): ConnectError {
  const { path = "", suggestion, fieldNames, problem } = request.location ?? {};
  const where = path === "" ? "" : ` at ${path}`;
  const reason = problem ?? (request.error instanceof Error ? request.error.message : String(request.error));
  const hints: string[] = [];
  if (suggestion !== undefined) {
    hints.push(`did you mean "${suggestion}"?`);
  }
  if (fieldNames !== undefined) {
    hints.push(`the fields there are ${fieldNames.join(", ")}`);
  }
  const hint = hints.map((text) => `; ${text}`).join("");
  return new ConnectError(`the request message could not be decoded${where}: ${reason}${hint}`, Code.InvalidArgument);
}
