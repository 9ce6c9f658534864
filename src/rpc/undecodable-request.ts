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
  const reason = request.error instanceof Error ? request.error.message : String(request.error);
  const hints: string[] = [];
  if (reason.includes("google.protobuf.FieldMask from JSON")) {
    hints.push(FIELD_MASK_JSON_HINT);
  }
  const { path = "", suggestion, notObject = false, fieldNames } = request.location ?? {};
  if (suggestion !== undefined) {
    hints.push(`did you mean "${suggestion}"?`);
  }
  if (fieldNames !== undefined) {
    hints.push(`the fields there are ${fieldNames.join(", ")}`);
  }
  if (notObject) {
    hints.push(path === "" ? "the request must be a JSON object of its fields" : "the value there must be a JSON object");
  }
  const where = path === "" ? "" : ` at ${path}`;
  const hint = hints.map((text) => `; ${text}`).join("");
  throw new ConnectError(`the request message could not be decoded${where}: ${reason}${hint}`, Code.InvalidArgument);
}

/** How to write an update mask in JSON, which protobuf's own message leaves out. */
const FIELD_MASK_JSON_HINT =
  'in JSON, an update mask is one string of lowerCamelCase field paths separated by commas, for example "updateMask": "baseUrl,defaultSender"';
