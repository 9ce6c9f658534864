/**
 * wrk Lua scripts that POST a protobuf body, optionally building each
 * request's body anew: with an integration id taken in turn from a list,
 * and with an idempotency key of its own.
 */

import { randomBytes } from "node:crypto";

/** Tag of `SendSmsRequest.integration_id`: field 1, length-delimited. */
const INTEGRATION_ID_TAG = (1 << 3) | 2;
/** Tag of `SendSmsRequest.idempotency_key`: field 6, length-delimited. */
const IDEMPOTENCY_KEY_TAG = (6 << 3) | 2;
/**
 * Maximum sizes of the values the scripts write. A script writes a field's
 * length as one byte, which protobuf reads as a varint only below 128. A
 * key adds the run id (12 characters from {@link newRunId}), the thread
 * number and a counter to its prefix.
 */
const MAX_INTEGRATION_ID_BYTES = 127;
const MAX_KEY_PREFIX_BYTES = 64;

/** Options of {@link wrkScript}. */
export interface WrkScriptOptions {
  /** The request body sent as is, or the fields between the integration id and the key when those are set. */
  body: Uint8Array;
  headers: Record<string, string>;
  /**
   * When set, each request puts the next id of this list, in order and
   * then from the start again, in field 1 before the body. The body must
   * then leave field 1 out.
   */
  integrationIds?: readonly string[];
  /**
   * When set, every request gets its own idempotency key: this prefix, the
   * script's first argument, the wrk thread number and a counter. Protobuf
   * lets the key field follow the others. The counter starts again in every
   * wrk run, so each run must pass a new first argument (see
   * {@link newRunId}), or it replays the keys of the runs before it.
   */
  keyPrefix?: string;
}

/** Returns a wrk Lua script that POSTs the body with the headers. @throws Error when an id or the key prefix is too long. */
export function wrkScript(options: WrkScriptOptions): string {
  const lines = [`wrk.method = "POST"`, `wrk.body = ${luaString(options.body)}`];
  for (const [name, value] of Object.entries(options.headers)) {
    lines.push(`wrk.headers[${luaString(Buffer.from(name))}] = ${luaString(Buffer.from(value))}`);
  }
  const { integrationIds, keyPrefix } = options;
  if (integrationIds === undefined && keyPrefix === undefined) {
    return `${lines.join("\n")}\n`;
  }

  const requestLines = ["function request()", "  counter = counter + 1", "  local body = wrk.body"];
  lines.push("local counter = 0");
  if (integrationIds !== undefined) {
    const tooLong = integrationIds.find((id) => Buffer.byteLength(id) > MAX_INTEGRATION_ID_BYTES);
    if (integrationIds.length === 0 || tooLong !== undefined) {
      throw new Error(`integrationIds must list 1 or more ids of at most ${MAX_INTEGRATION_ID_BYTES} bytes, got ${tooLong ?? "none"}`);
    }
    lines.push(`local integration_ids = {${integrationIds.map((id) => luaString(Buffer.from(id))).join(",")}}`);
    requestLines.push(
      "  local id = integration_ids[(counter - 1) % #integration_ids + 1]",
      `  body = string.char(${INTEGRATION_ID_TAG}, #id) .. id .. body`,
    );
  }
  if (keyPrefix !== undefined) {
    if (Buffer.byteLength(keyPrefix) > MAX_KEY_PREFIX_BYTES) {
      throw new Error(`keyPrefix must be at most ${MAX_KEY_PREFIX_BYTES} bytes, got "${keyPrefix}"`);
    }
    lines.push(
      `local key_prefix = ${luaString(Buffer.from(keyPrefix))}`,
      'local run_id = ""',
      "function init(args)",
      '  run_id = args[1] or ""',
      "end",
      "local threads_started = 0",
      "function setup(thread)",
      "  threads_started = threads_started + 1",
      '  thread:set("thread_number", threads_started)',
      "end",
    );
    requestLines.push(
      '  local key = key_prefix .. run_id .. "-" .. thread_number .. "-" .. counter',
      `  body = body .. string.char(${IDEMPOTENCY_KEY_TAG}, #key) .. key`,
    );
  }
  requestLines.push("  return wrk.format(nil, nil, nil, body)", "end");
  return `${[...lines, ...requestLines].join("\n")}\n`;
}

/** Returns a new first argument for a script with a key prefix, so that its keys differ from those of earlier runs. */
export function newRunId(): string {
  return randomBytes(6).toString("hex");
}

/** Returns bytes as a Lua string literal of decimal escapes, which any byte survives. */
function luaString(bytes: Uint8Array): string {
  let text = '"';
  for (const byte of bytes) {
    text += `\\${byte.toString().padStart(3, "0")}`;
  }
  return `${text}"`;
}
