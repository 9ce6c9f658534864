import { isLosslessNumber, parse } from "lossless-json";

/**
 * A JSON value as plain JavaScript data.
 *
 * The shape matches the `JsonValue` of `@bufbuild/protobuf`, so a decoded
 * `google.protobuf.Struct` can be passed in without this module depending on
 * the wire library.
 */
export type JsonValue = number | string | boolean | null | JsonObject | JsonValue[];

/** A JSON object as plain JavaScript data. */
export type JsonObject = { [key: string]: JsonValue };

/** Tells whether a value is a JSON object, as opposed to an array, `null` or a scalar. */
export function isJsonObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * Parses JSON text and keeps every number as a `LosslessNumber`.
 *
 * Gateways send ids such as `12345678901234567890123` that lose digits in
 * `JSON.parse`, so numbers keep their exact text. A duplicate key keeps its
 * last value, as `JSON.parse` does, instead of failing the whole reply. A
 * `__proto__` key becomes an own property and never changes a prototype.
 *
 * @throws SyntaxError when the text is not JSON.
 */
export function parseJsonLossless(text: string): unknown {
  return parse(text, null, { onDuplicateKey: ({ newValue }) => newValue });
}

/** Maximum number of object keys that `describeJsonValue` lists. */
const MAX_LISTED_KEYS = 5;

/**
 * Describes a parsed JSON value in a few words for a warning, such as
 * `an object with the keys "id", "status"` or `an array of 2 items`.
 */
export function describeJsonValue(value: unknown): string {
  if (Array.isArray(value)) {
    return `an array of ${value.length} ${value.length === 1 ? "item" : "items"}`;
  }
  if (isJsonObject(value)) {
    const keys = Object.keys(value);
    if (keys.length === 0) {
      return "an empty object";
    }
    const listed = keys.slice(0, MAX_LISTED_KEYS).map((key) => JSON.stringify(key));
    const more = keys.length > MAX_LISTED_KEYS ? ` and ${keys.length - MAX_LISTED_KEYS} more` : "";
    return `an object with the keys ${listed.join(", ")}${more}`;
  }
  if (isLosslessNumber(value)) {
    return `the number ${value.value}`;
  }
  if (typeof value === "string") {
    return `the string ${JSON.stringify(value)}`;
  }
  return String(value);
}
