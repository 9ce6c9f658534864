import { fromJson, type DescField, type DescMessage, type JsonReadOptions, type JsonValue } from "@bufbuild/protobuf";

/** The location of a JSON decoding failure, with a likely fix for a misspelled key. */
export interface JsonErrorLocation {
  /** Path of the innermost message that fails on its own, in the keys the caller wrote, such as `messages[3]`. Empty for the request itself. */
  path: string;
  /** A known field that a rejected key matches in all but letter case or underscores, such as `idempotencyKey`. */
  suggestion?: string;
  /** True when the message at `path` is not a JSON object. */
  notObject?: boolean;
  /** The JSON names of the fields of the message at `path`, when it has a key that matches none of them. */
  fieldNames?: string[];
}

/**
 * Finds the innermost message of a JSON request that fails to decode on its
 * own, so that an error can name the message of a batch that is wrong. protobuf's
 * own error names the message type and the key, never its position.
 *
 * Call it only after decoding the whole text failed. It decodes each key of a
 * level alone, and then the failing key's messages, so it costs about two more
 * decodes of the request.
 *
 * Well-known types (Struct, Timestamp, FieldMask and so on) have JSON forms of
 * their own, so the search stops at them.
 */
export function locateJsonError(schema: DescMessage, text: string, options: Partial<JsonReadOptions>): JsonErrorLocation {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return { path: "" };
  }
  return locateIn(schema, json, "", options);
}

function locateIn(schema: DescMessage, json: unknown, path: string, options: Partial<JsonReadOptions>): JsonErrorLocation {
  if (!isObject(json)) {
    return { path, notObject: true };
  }

  // protobuf-es decodes the keys in order and stops at the first that fails, so the search does too.
  for (const [key, value] of Object.entries(json)) {
    const field = schema.fields.find((candidate) => candidate.jsonName === key || candidate.name === key);
    if (field === undefined) {
      const suggestion = similarFieldName(schema, key);
      return suggestion === undefined ? { path, fieldNames: schema.fields.map((known) => known.jsonName) } : { path, suggestion };
    }
    if (decodes(schema, { [key]: value }, options)) {
      continue;
    }
    const fieldPath = path === "" ? key : `${path}.${key}`;
    // A Struct accepts any JSON object, such as passthrough.body, but nothing else.
    if (field.fieldKind === "message" && field.message.typeName === "google.protobuf.Struct" && value !== null && !isObject(value)) {
      return { path: fieldPath, notObject: true };
    }
    for (const [step, message, element] of nestedMessages(field, key, value)) {
      if (!decodes(message, element, options)) {
        return locateIn(message, element, path === "" ? step : `${path}.${step}`, options);
      }
    }
    return { path };
  }
  return { path };
}

/**
 * Lists the messages that a field's JSON value contains, each with its step
 * of the path (`key`, `key[2]` or `key["name"]`). Well-known types are left out.
 */
function nestedMessages(field: DescField, key: string, value: unknown): [string, DescMessage, unknown][] {
  switch (field.fieldKind) {
    case "message":
      return isOwnMessage(field.message) && value !== null ? [[key, field.message, value]] : [];
    case "list":
      if (field.listKind !== "message" || !isOwnMessage(field.message) || !Array.isArray(value)) {
        return [];
      }
      return value.map((element, index): [string, DescMessage, unknown] => [`${key}[${index}]`, field.message, element]);
    case "map":
      if (field.mapKind !== "message" || !isOwnMessage(field.message) || !isObject(value)) {
        return [];
      }
      return Object.entries(value).map(([mapKey, element]): [string, DescMessage, unknown] => [
        `${key}[${JSON.stringify(mapKey)}]`,
        field.message,
        element,
      ]);
    default:
      return [];
  }
}

function decodes(schema: DescMessage, json: unknown, options: Partial<JsonReadOptions>): boolean {
  try {
    fromJson(schema, json as JsonValue, options);
    return true;
  } catch {
    return false;
  }
}

/** Returns the JSON name of a field whose name matches `key` but for letter case and underscores. */
function similarFieldName(schema: DescMessage, key: string): string | undefined {
  const folded = foldName(key);
  return schema.fields.find((field) => foldName(field.jsonName) === folded || foldName(field.name) === folded)?.jsonName;
}

function foldName(name: string): string {
  return name.replaceAll("_", "").toLowerCase();
}

function isOwnMessage(schema: DescMessage): boolean {
  return !schema.typeName.startsWith("google.protobuf.");
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
