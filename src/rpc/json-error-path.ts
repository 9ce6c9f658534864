import { fromJson, ScalarType, type DescEnum, type DescField, type DescMessage, type JsonReadOptions, type JsonValue } from "@bufbuild/protobuf";
import { protoCamelCase } from "@bufbuild/protobuf/reflect";
import { isWrapperDesc } from "@bufbuild/protobuf/wkt";

/** The location of a JSON decoding failure, with a likely fix for a misspelled key. */
export interface JsonErrorLocation {
  /**
   * Path of the failure in the keys the caller wrote: the value that is wrong, such as
   * `integration.apiKey` or `messages[3]`, or else the innermost message that fails on
   * its own. Empty for the request itself.
   */
  path: string;
  /** A known field that a rejected key matches in all but letter case or underscores, such as `idempotencyKey`. */
  suggestion?: string;
  /** The JSON names of the fields of the message at `path`, when it has a key that matches none of them. */
  fieldNames?: string[];
  /**
   * The problem with the value at `path`, such as `expected a string, got a number`.
   * It names the JSON type of the value, never the value, which may be a secret or a
   * phone number. The one exception is a FieldMask string made only of letters,
   * digits, underscores, dots and commas: it lists field names, so it is quoted with
   * its lowerCamelCase form. Set whenever a value, rather than a key, is wrong.
   */
  problem?: string;
}

/**
 * Finds the value of a JSON request that fails to decode, so that an error can
 * name the message of a batch that is wrong, and describes the problem without
 * quoting the value, unless it is a FieldMask of field names. protobuf's own error names the message type and the key,
 * never its position, and quotes the value.
 *
 * Call it only after decoding the whole text failed. It decodes each key of a
 * level alone, and then the failing key's messages, so it costs about two more
 * decodes of the request.
 */
export function locateJsonError(schema: DescMessage, text: string, options: Partial<JsonReadOptions>): JsonErrorLocation {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    return { path: "", problem: notJson(error) };
  }
  if (!isObject(json)) {
    return { path: "", problem: `expected a JSON object of the request's fields, got ${jsonTypeOf(json)}` };
  }
  return locateIn(schema, json, "", options);
}

function locateIn(schema: DescMessage, json: Record<string, unknown>, path: string, options: Partial<JsonReadOptions>): JsonErrorLocation {
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
    return locateField(schema, field, key, value, path === "" ? key : `${path}.${key}`, options);
  }
  // Each key decodes alone: a field is set twice, or two fields of a oneof are set. protobuf's message names them.
  return { path };
}

/** Finds what is wrong in the value of a field that fails to decode on its own. */
function locateField(
  schema: DescMessage,
  field: DescField,
  key: string,
  value: unknown,
  path: string,
  options: Partial<JsonReadOptions>,
): JsonErrorLocation {
  switch (field.fieldKind) {
    case "list": {
      if (!Array.isArray(value)) {
        return { path, problem: `expected a JSON array, got ${jsonTypeOf(value)}` };
      }
      const index = value.findIndex((element) => !decodes(schema, { [key]: [element] }, options));
      return index === -1 ? { path } : locateElement(field, value[index], `${path}[${index}]`, options);
    }
    case "map": {
      if (!isObject(value)) {
        return { path, problem: `expected a JSON object, got ${jsonTypeOf(value)}` };
      }
      const entry = Object.entries(value).find(([mapKey, element]) => !decodes(schema, { [key]: { [mapKey]: element } }, options));
      return entry === undefined ? { path } : locateElement(field, entry[1], `${path}[${JSON.stringify(entry[0])}]`, options);
    }
    default:
      return locateElement(field, value, path, options);
  }
}

/** The type of a singular field, or of the elements of a list or map field. */
type ElementType = Pick<DescField, "message" | "enum" | "scalar">;

/** Finds what is wrong in one value, searching a message of the service's own further. */
function locateElement(type: ElementType, value: unknown, path: string, options: Partial<JsonReadOptions>): JsonErrorLocation {
  if (type.message !== undefined && isOwnMessage(type.message) && isObject(value)) {
    return locateIn(type.message, value, path, options);
  }
  const expected = expectedJson(type);
  if (type.message?.typeName === "google.protobuf.FieldMask" && typeof value === "string") {
    return { path, problem: `expected ${expected.text}, got ${fieldMaskProblem(value)}` };
  }
  const kind = jsonTypeOf(value);
  const problem = expected.types.includes(jsonTypeName(value))
    ? `expected ${expected.text}, got ${kind} ${expected.unfit ?? "that is not one"}`
    : `expected ${expected.text}, got ${kind}`;
  return { path, problem };
}

type JsonTypeName = "string" | "number" | "boolean" | "object" | "array" | "null";

/** The JSON types a value may have, and how to write one, in words. */
interface ExpectedJson {
  types: JsonTypeName[];
  text: string;
  /** The reason a value of one of `types` still fails, when there is only one. */
  unfit?: string;
}

const WHOLE_NUMBER_RANGES: Partial<Record<ScalarType, string>> = {
  [ScalarType.INT32]: "-2147483648 to 2147483647",
  [ScalarType.SINT32]: "-2147483648 to 2147483647",
  [ScalarType.SFIXED32]: "-2147483648 to 2147483647",
  [ScalarType.UINT32]: "0 to 4294967295",
  [ScalarType.FIXED32]: "0 to 4294967295",
  [ScalarType.INT64]: "-9223372036854775808 to 9223372036854775807",
  [ScalarType.SINT64]: "-9223372036854775808 to 9223372036854775807",
  [ScalarType.SFIXED64]: "-9223372036854775808 to 9223372036854775807",
  [ScalarType.UINT64]: "0 to 18446744073709551615",
  [ScalarType.FIXED64]: "0 to 18446744073709551615",
};

/** Returns the JSON values that protobuf's JSON form takes for a value of this type. */
function expectedJson(type: ElementType): ExpectedJson {
  if (type.message !== undefined) {
    return expectedMessageJson(type.message);
  }
  if (type.enum !== undefined) {
    return expectedEnumJson(type.enum);
  }
  switch (type.scalar) {
    case ScalarType.STRING:
      // protobuf rejects a JSON string only when UTF-8 cannot encode it.
      return { types: ["string"], text: "a string", unfit: "with an unpaired surrogate escape (\\uD800 to \\uDFFF), which UTF-8 cannot encode" };
    case ScalarType.BOOL:
      return { types: ["boolean"], text: "true or false" };
    case ScalarType.BYTES:
      return { types: ["string"], text: "a base64 string" };
    case ScalarType.DOUBLE:
    case ScalarType.FLOAT:
      return { types: ["number", "string"], text: "a number" };
    case undefined:
      return { types: [], text: "a value" };
    default:
      return { types: ["number", "string"], text: `a whole number from ${WHOLE_NUMBER_RANGES[type.scalar]}` };
  }
}

function expectedEnumJson(type: DescEnum): ExpectedJson {
  if (type.typeName === "google.protobuf.NullValue") {
    return { types: ["null"], text: "null" };
  }
  return { types: ["string", "number"], text: `one of ${type.values.map((value) => value.name).join(", ")}` };
}

function expectedMessageJson(type: DescMessage): ExpectedJson {
  if (isWrapperDesc(type)) {
    return expectedJson(type.fields[0]!);
  }
  switch (type.typeName) {
    case "google.protobuf.Timestamp":
      return { types: ["string"], text: 'an RFC 3339 time from 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z, such as "2025-01-31T12:00:00Z"' };
    case "google.protobuf.Duration":
      return { types: ["string"], text: 'a duration in seconds, such as "1.5s"' };
    case "google.protobuf.FieldMask":
      return { types: ["string"], text: 'one string of lowerCamelCase field paths separated by commas, such as "baseUrl,defaultSender"' };
    case "google.protobuf.Struct":
      return { types: ["object"], text: "a JSON object", unfit: "nested too deeply" };
    case "google.protobuf.ListValue":
      return { types: ["array"], text: "a JSON array", unfit: "nested too deeply" };
    case "google.protobuf.Value":
      return { types: ["string", "number", "boolean", "object", "array", "null"], text: "a JSON value", unfit: "nested too deeply" };
    case "google.protobuf.Any":
      return { types: ["object"], text: 'a JSON object with an "@type" key of a known message type' };
    default:
      return { types: ["object"], text: "a JSON object" };
  }
}

/** Maximum length of a FieldMask string that an error quotes. */
const MAX_QUOTED_MASK_LENGTH = 200;

/**
 * Describes a FieldMask string that protobuf rejects. protobuf-es 2.13 rejects
 * a JSON FieldMask string only for an underscore in a path, because JSON writes the
 * paths in lowerCamelCase (`defaultSender`) and proto in snake_case
 * (`default_sender`).
 */
function fieldMaskProblem(text: string): string {
  const rule = "FieldMask paths are lowerCamelCase in JSON";
  if (text.length > MAX_QUOTED_MASK_LENGTH || !/^[\w.,]+$/.test(text)) {
    return `a string with an underscore in a path; ${rule}, such as "defaultSender" for default_sender`;
  }
  const camelCase = text
    .split(",")
    .map((path) => path.split(".").map(protoCamelCase).join("."))
    .join(",");
  return `"${text}"; ${rule}, so write "${camelCase}"`;
}

function jsonTypeName(value: unknown): JsonTypeName {
  if (value === null) {
    return "null";
  }
  if (Array.isArray(value)) {
    return "array";
  }
  return typeof value as JsonTypeName;
}

/** Returns the JSON type of a value with its article, such as `a number`, and never the value. */
function jsonTypeOf(value: unknown): string {
  const name = jsonTypeName(value);
  switch (name) {
    case "null":
      return "null";
    case "array":
    case "object":
      return `an ${name}`;
    default:
      return `a ${name}`;
  }
}

/**
 * Returns the problem of text that is not JSON. V8's message quotes the text
 * around the mistake in double quotes, so a message with one is left out.
 */
function notJson(error: unknown): string {
  const detail = error instanceof Error ? error.message : "";
  return detail === "" || detail.includes('"') ? "the text is not valid JSON" : `the text is not valid JSON: ${detail}`;
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
