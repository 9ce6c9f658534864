import { parse } from "lossless-json";

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
