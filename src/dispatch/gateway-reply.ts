import { isLosslessNumber } from "lossless-json";

import { isInTimestampRange, parseEpoch, parseGatewayDate } from "./gateway-date.js";
import { readJsonPath, type PathLookup } from "./json-path.js";
import { longerThan } from "../domain/text-length.js";
import { describeJsonValue, isJsonObject, parseJsonLossless } from "./json-value.js";
import { bodyText, type BodyStart } from "./read-body.js";
import type { DeadlineEnd } from "./send-deadline.js";

/** Message id and date read from a 2xx reply to the SMS request. */
export interface SendReply {
  /** The message id, digit-exact for numbers, `""` when the reply has none. */
  id: string;
  /** The gateway's date, else the send time. */
  date: Date;
  /** The date exactly as the gateway gave it, `""` when it gave none. */
  rawDate: string;
  dateSource: "gateway" | "send_time";
  warnings: string[];
}

/** Dot paths to the id and the date in the reply. */
export interface ReplyPaths {
  idPath: string;
  datePath: string;
}

/** Maximum length of a gateway value that a warning quotes. */
const MAX_QUOTED_CHARS = 100;

/**
 * Maximum length of the id and the raw date that a result carries, in code points. Real ids
 * and dates are far shorter, and the bounds keep a batch response of sent
 * messages within a few MB, where a gateway could otherwise make it any size.
 */
export const MAX_ID_LENGTH = 256;
export const MAX_RAW_DATE_LENGTH = 64;

/**
 * Reads the message id and date from a 2xx reply to the SMS request.
 *
 * Any 2xx reply means the gateway accepted the message, so this function
 * returns fields for every reply and never throws. A reply that is empty, not
 * JSON, larger than `maxBytes` or without an id at `idPath` gives an empty id
 * and a warning. A missing date gives the send time and no warning. A date
 * that does not parse gives the send time and a warning.
 */
export function readSendReply(reply: BodyStart, maxBytes: number, paths: ReplyPaths, sendTime: Date): SendReply {
  const warnings: string[] = [];
  const values = parseReply(reply, maxBytes, paths, warnings);
  if (values === undefined) {
    return { id: "", date: sendTime, rawDate: "", dateSource: "send_time", warnings };
  }

  const id = withinLength(readId(values, paths.idPath, warnings), MAX_ID_LENGTH, `the id at ${paths.idPath}`, warnings);
  const date = readDate(values.date, paths.datePath, sendTime, warnings);
  date.rawDate = withinLength(date.rawDate, MAX_RAW_DATE_LENGTH, `the date at ${paths.datePath}`, warnings);
  return { id, ...date, warnings };
}

/** Returns `value`, or "" with a warning when it is longer than `max`, because a cut id or date would be wrong. */
function withinLength(value: string, max: number, name: string, warnings: string[]): string {
  if (!longerThan(value, max)) {
    return value;
  }
  warnings.push(`${name} has ${[...value].length} characters, more than the ${max} that a result carries, so it was left out`);
  return "";
}

/**
 * Builds the reply fields for a 2xx reply whose body failed to arrive: no id,
 * the send time, and a warning that starts with `reason`.
 */
export function unreadSendReply(reason: string, idPath: string, sendTime: Date): SendReply {
  const warnings = [`${reason}, so there is no id at ${idPath}`];
  return { id: "", date: sendTime, rawDate: "", dateSource: "send_time", warnings };
}

/**
 * Describes why a 2xx body failed to arrive, as the start of a warning.
 *
 * `ended` is why the send's abort signal fired, if it did, which explains
 * the error better than the error itself.
 */
export function describeBodyFailure(error: unknown, ended: DeadlineEnd | undefined): string {
  if (ended === "timeout") {
    return "reply body did not arrive within the deadline";
  }
  if (ended === "canceled") {
    return "reply body was not read because the caller canceled";
  }
  if (ended === "shutdown") {
    return "reply body was not read because the service was shutting down";
  }
  const code = (error as { code?: unknown } | null)?.code;
  return `reply body failed to arrive${typeof code === "string" ? ` (${code})` : ""}`;
}

/** The parsed reply and the values at its id path and date path. */
interface ReplyValues {
  /** The parsed reply, undefined when only the values at the paths could be kept. */
  root?: unknown;
  id: PathLookup;
  date: PathLookup;
}

/** Parses the reply body and looks up both paths, or adds a warning and returns `undefined`. */
function parseReply(reply: BodyStart, maxBytes: number, paths: ReplyPaths, warnings: string[]): ReplyValues | undefined {
  const { idPath } = paths;
  if (!reply.complete) {
    warnings.push(`reply is larger than ${maxBytes} bytes and was not parsed, so there is no id at ${idPath}`);
    return undefined;
  }
  const text = bodyText(reply);
  if (text.trim() === "") {
    warnings.push(`reply body is empty, so there is no id at ${idPath}`);
    return undefined;
  }
  // JSON.parse reads most replies. lossless-json reads a reply again when the
  // value at the id path or the date path is a number, so that it keeps every
  // digit, which JSON.parse does not. Gateways mostly put strings there.
  let root: unknown;
  try {
    root = JSON.parse(text);
  } catch {
    warnings.push(`reply is not JSON, so there is no id at ${idPath}`);
    return undefined;
  }
  const values = lookUpPaths(root, paths);
  if (!isNumber(values.id) && !isNumber(values.date)) {
    return values;
  }
  try {
    return lookUpPaths(parseJsonLossless(text), paths);
  } catch {
    // lossless-json recurses once per level, so a deeply nested reply exhausts the stack.
    // Values other than numbers, which JSON.parse may have rounded, are kept as it read them.
    const tooDeep = "reply nests too deeply to read its numbers digit-exact";
    if (isNumber(values.id)) {
      warnings.push(`${tooDeep}, so there is no id at ${idPath}`);
      return undefined;
    }
    warnings.push(`${tooDeep}, so the date at ${paths.datePath} was not read and the date is the send time`);
    return { id: values.id, date: { found: false } };
  }
}

function lookUpPaths(root: unknown, paths: ReplyPaths): ReplyValues {
  return { root, id: readJsonPath(root, paths.idPath), date: readJsonPath(root, paths.datePath) };
}

function isNumber(lookup: PathLookup): boolean {
  return lookup.found && typeof lookup.value === "number";
}

function readId(values: ReplyValues, idPath: string, warnings: string[]): string {
  const lookup = values.id;
  if (!lookup.found) {
    const example =
      values.root === undefined ? undefined : (suggestIndexedPath(values.root, idPath) ?? suggestKeyPath(values.root, idPath));
    warnings.push(
      example === undefined
        ? `no id at ${idPath}`
        : `no id at ${idPath}. Set id_path to the field that holds the message id, for example ${example}.`,
    );
    return "";
  }

  const value = lookup.value;
  if (typeof value === "string") {
    if (value === "") {
      warnings.push(`the id at ${idPath} is an empty string`);
    }
    return value;
  }
  if (isLosslessNumber(value)) {
    return value.value;
  }
  if (value === null) {
    warnings.push(`no id at ${idPath} because the value is null`);
    return "";
  }

  // An object or array must never become "[object Object]" or a list of ids.
  const example = suggestIdPath(value, idPath);
  warnings.push(
    `found ${describeJsonValue(value)} at ${idPath} instead of a string or number id. ` +
      `Set id_path to the field that holds the message id${example === undefined ? "" : `, for example ${example}`}.`,
  );
  return "";
}

/**
 * Suggests the id path with `.0` after the first array that the path names
 * a field of, when a string or number id is found there, as for
 * `data.id` in `{"data": [{"id": 1}]}`.
 */
function suggestIndexedPath(root: unknown, idPath: string): string | undefined {
  const segments = idPath.split(".");
  let current = root;
  for (let index = 0; index < segments.length; index++) {
    if (Array.isArray(current) && !/^[0-9]+$/.test(segments[index]!)) {
      const example = [...segments.slice(0, index), "0", ...segments.slice(index)].join(".");
      const lookup = readJsonPath(root, example);
      const isId = lookup.found && (typeof lookup.value === "string" || typeof lookup.value === "number" || isLosslessNumber(lookup.value));
      return isId ? example : undefined;
    }
    const next = readJsonPath(current, segments[index]!);
    if (!next.found) {
      return undefined;
    }
    current = next.value;
  }
  return undefined;
}

/** Returns the dot path of `segment` inside `path`, where an empty `path` is the reply's root. */
function joinPath(path: string, segment: string): string {
  return path === "" ? segment : `${path}.${segment}`;
}

/** Nesting depth to which {@link suggestKeyPath} looks for the id path's last key. */
const MAX_SUGGEST_DEPTH = 4;

/**
 * Suggests the first path, in document order and in objects at most four
 * levels deep, that ends in the id path's last key and contains a string or
 * number, as `data.id` for the id path `id` in `{"data": {"id": "m1"}}`.
 * Arrays count by their first element. An id path with an index gets none.
 */
function suggestKeyPath(root: unknown, idPath: string): string | undefined {
  const segments = idPath.split(".");
  // A path with an index names a position, which another element would not match.
  if (segments.some((segment) => /^[0-9]+$/.test(segment))) {
    return undefined;
  }
  const key = segments.at(-1)!;
  const visit = (value: unknown, path: string, depth: number): string | undefined => {
    if (depth > MAX_SUGGEST_DEPTH) {
      return undefined;
    }
    if (Array.isArray(value)) {
      return value.length > 0 ? visit(value[0], joinPath(path, "0"), depth + 1) : undefined;
    }
    if (!isJsonObject(value)) {
      return undefined;
    }
    for (const [name, child] of Object.entries(value)) {
      // A dot path cannot name an empty key or a key that contains a dot.
      if (name === "" || name.includes(".")) {
        continue;
      }
      const childPath = joinPath(path, name);
      const isId = typeof child === "string" || typeof child === "number" || isLosslessNumber(child);
      if (name === key && isId && childPath !== idPath) {
        return childPath;
      }
      const found = visit(child, childPath, depth + 1);
      if (found !== undefined) {
        return found;
      }
    }
    return undefined;
  };
  return visit(root, "", 0);
}

/** Suggests a path to an `id` inside an object or array found at the id path. */
function suggestIdPath(value: unknown, idPath: string): string | undefined {
  if (isJsonObject(value) && Object.hasOwn(value, "id")) {
    return `${idPath}.id`;
  }
  if (Array.isArray(value) && value.length > 0) {
    const first = value[0];
    return isJsonObject(first) && Object.hasOwn(first, "id") ? `${idPath}.0.id` : `${idPath}.0`;
  }
  return undefined;
}

function readDate(
  lookup: PathLookup,
  datePath: string,
  sendTime: Date,
  warnings: string[],
): Pick<SendReply, "date" | "rawDate" | "dateSource"> {
  const fallback = { date: sendTime, rawDate: "", dateSource: "send_time" as const };
  if (!lookup.found || lookup.value === null) {
    return fallback;
  }

  const value = lookup.value;
  let rawDate: string;
  let date: Date | undefined;
  if (typeof value === "string") {
    rawDate = value;
    date = parseGatewayDate(value);
  } else if (isLosslessNumber(value)) {
    rawDate = value.value;
    date = parseEpoch(Number(value.value));
  } else {
    warnings.push(`found ${describeJsonValue(value)} at ${datePath} instead of a date, so the date is the send time`);
    return fallback;
  }

  // A long value is not quoted in part, because a cut could split a secret that the caller then cannot redact.
  const quotedDate = rawDate.length > MAX_QUOTED_CHARS ? `of ${rawDate.length} characters` : JSON.stringify(rawDate);
  if (date === undefined) {
    warnings.push(
      `could not parse the date ${quotedDate} at ${datePath}, so the date is the send time. ` +
        "Expected ISO 8601, RFC 2822, or epoch seconds or milliseconds.",
    );
    return { ...fallback, rawDate };
  }
  if (!isInTimestampRange(date)) {
    // The response could not be written as JSON with such a date, although the SMS was sent.
    warnings.push(
      `the date ${quotedDate} at ${datePath} is outside the years 1 to 9999 that the response can carry, ` +
        "so the date is the send time",
    );
    return { ...fallback, rawDate };
  }
  return { date, rawDate, dateSource: "gateway" };
}
