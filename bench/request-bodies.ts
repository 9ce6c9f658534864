/**
 * The SendSms requests the load tools send, as files and scripts: a gRPC
 * frame, a Connect protobuf body, and a wrk Lua script that can put a new
 * idempotency key in every request.
 */
import { create, toBinary } from "@bufbuild/protobuf";
import { SendSmsRequestSchema } from "../gen/smsgateway/v1/sms_service_pb.js";

/** Integration id that the runner configures on the service. */
export const BENCH_INTEGRATION_ID = "bench";

/** Tag of `SendSmsRequest.idempotency_key`: field 6, length-delimited. */
const IDEMPOTENCY_KEY_TAG = (6 << 3) | 2;

/** Returns the protobuf encoding of the benchmark's SendSms request, with `idempotencyKey` when given. */
export function sendSmsBytes(idempotencyKey = ""): Uint8Array {
  return toBinary(
    SendSmsRequestSchema,
    create(SendSmsRequestSchema, {
      integrationId: BENCH_INTEGRATION_ID,
      to: "+15550100000",
      content: "Your code is 123456",
      idempotencyKey,
    }),
  );
}

/** Returns a message in a gRPC length-prefixed frame: flag byte 0 (uncompressed), then a 4-byte big-endian length. */
export function grpcFrame(message: Uint8Array): Buffer {
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(message.length, 1);
  return Buffer.concat([prefix, message]);
}

/** Options of {@link wrkScript}. */
export interface WrkScriptOptions {
  /** The request body sent as is, or before the key field when `keyPrefix` is set. */
  body: Uint8Array;
  headers: Record<string, string>;
  /**
   * When set, every request gets its own idempotency key: this prefix, the
   * wrk thread number and a counter. Protobuf lets the key field follow the
   * others.
   */
  keyPrefix?: string;
}

/** Returns a wrk Lua script that POSTs the body with the headers. */
export function wrkScript(options: WrkScriptOptions): string {
  const lines = [`wrk.method = "POST"`, `wrk.body = ${luaString(options.body)}`];
  for (const [name, value] of Object.entries(options.headers)) {
    lines.push(`wrk.headers[${luaString(Buffer.from(name))}] = ${luaString(Buffer.from(value))}`);
  }

  if (options.keyPrefix !== undefined) {
    lines.push(
      `local key_prefix = ${luaString(Buffer.from(options.keyPrefix))}`,
      "local threads_started = 0",
      "local counter = 0",
      "function setup(thread)",
      "  threads_started = threads_started + 1",
      '  thread:set("thread_number", threads_started)',
      "end",
      "function request()",
      "  counter = counter + 1",
      '  local key = key_prefix .. thread_number .. "-" .. counter',
      `  return wrk.format(nil, nil, nil, wrk.body .. string.char(${IDEMPOTENCY_KEY_TAG}, #key) .. key)`,
      "end",
    );
  }
  return `${lines.join("\n")}\n`;
}

/** Returns bytes as a Lua string literal of decimal escapes, which any byte survives. */
function luaString(bytes: Uint8Array): string {
  let text = '"';
  for (const byte of bytes) {
    text += `\\${byte.toString().padStart(3, "0")}`;
  }
  return `${text}"`;
}
