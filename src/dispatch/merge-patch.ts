import { isJsonObject, type JsonObject, type JsonValue } from "./json-value.js";

/**
 * Applies a JSON Merge Patch (RFC 7396) to a target and returns the result.
 *
 * Objects merge recursively, arrays and scalars replace, and `null` removes
 * the key. Neither input is modified. Every object the merge builds has a
 * `null` prototype, so the keys `__proto__`, `constructor` and `prototype`
 * are ordinary own properties. They reach `JSON.stringify` as keys and never
 * change a prototype. Values that the patch replaces wholesale, such as an
 * array of objects, are carried over by reference.
 *
 * NOTE: a `__proto__` key of a request's passthrough body never reaches the
 * merge. protobuf-es decodes `google.protobuf.Struct` into plain objects, where
 * that key sets the prototype, so the key is dropped without an error.
 */
export function applyMergePatch(target: JsonValue | undefined, patch: JsonValue): JsonValue {
  if (!isJsonObject(patch)) {
    return patch;
  }

  const result: JsonObject = Object.create(null);
  if (isJsonObject(target)) {
    for (const key of Object.keys(target)) {
      result[key] = target[key] as JsonValue;
    }
  }

  for (const key of Object.keys(patch)) {
    const value = patch[key] as JsonValue;
    if (value === null) {
      delete result[key];
      continue;
    }
    const current = Object.hasOwn(result, key) ? result[key] : undefined;
    result[key] = applyMergePatch(current, value);
  }
  return result;
}
