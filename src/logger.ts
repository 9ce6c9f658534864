import pino, { type DestinationStream, type Logger } from "pino";
import type { LogLevel } from "./config/settings.js";

/**
 * Keys whose values are replaced in every log line, at the top level and one
 * object deep. Code never logs secrets on purpose; this catches mistakes.
 */
const SECRET_KEYS: ReadonlySet<string> = new Set(["apiKey", "secretKey", "api_key", "secret_key", "token", "authorization", "password"]);

const SECRET_KEY_LIST: readonly string[] = [...SECRET_KEYS];

const CENSOR = "[REDACTED]";

function censor(): string {
  return CENSOR;
}

/**
 * Creates the service logger: JSON lines, ISO times and secrets redacted.
 * Lines written during a call carry its `requestId` field: the RPC pipeline
 * binds it in the call's child logger, and code deeper in a send adds it from
 * the send's deadline.
 *
 * NOTE: the id is passed explicitly rather than through AsyncLocalStorage,
 * whose promise hooks cost about a tenth of the CPU per call on Node 20.
 */
export function createLogger(level: LogLevel, destination?: DestinationStream): Logger {
  const options = {
    level,
    base: { service: "smsgateway" },
    timestamp: isoTimestamp,
    // pino's own `redact` option cloned each field of every line and parsed
    // its paths again, which made about a sixth of the bytes that a SendSms
    // call allocated (sampling heap profile, gRPC at 64 calls in flight).
    formatters: { log: redactSecretFields },
    // A child logger's bindings skip the log formatter, so its secret keys are censored here.
    // NOTE: bindings are checked at the top level only. The service binds no objects.
    serializers: {
      err: serializeError,
      ...Object.fromEntries(SECRET_KEY_LIST.map((key) => [key, censor])),
    },
  };
  // An asynchronous stdout gathers the lines written during one write into
  // the next write, instead of blocking once per line. minLength 1 writes
  // each line at once, as 0 does, and makes `flush(callback)` wait for the
  // writes in progress, which sonic-boom skips at 0 (see exitAfterLogWrites).
  return pino(options, destination ?? pino.destination({ dest: 1, sync: false, minLength: 1 }));
}

/**
 * Serializes an error as pino's `err` serializer does, but leaves out the
 * `data` of undici's HTTP parser errors: the raw reply bytes, which may echo
 * a credential of the request.
 */
function serializeError(error: Error): unknown {
  const serialized: unknown = pino.stdSerializers.err(error);
  if (error instanceof Error && error.name === "HTTPParserError" && typeof serialized === "object" && serialized !== null) {
    delete (serialized as { data?: unknown }).data;
  }
  return serialized;
}

/** Start of the ISO 8601 time of the second that `isoTimestamp` last wrote, up to the milliseconds. */
let cachedSecond = Number.NaN;
let cachedSecondPrefix = "";

/**
 * Returns the `time` field of a log line as pino's `isoTime` does, such as
 * `,"time":"2026-12-05T05:09:53.042Z"`. It formats a date once per second and
 * adds the milliseconds, because `Date.prototype.toISOString` on every line
 * was a visible part of the CPU per call.
 */
export function isoTimestamp(): string {
  const now = Date.now();
  const second = Math.floor(now / 1000);
  if (second !== cachedSecond) {
    cachedSecond = second;
    cachedSecondPrefix = new Date(second * 1000).toISOString().slice(0, -4);
  }
  return `,"time":"${cachedSecondPrefix}${String(now - second * 1000).padStart(3, "0")}Z"`;
}

/**
 * Returns the fields of a log line with the value of every secret key
 * replaced by `[REDACTED]`, at the top level and in objects one level down.
 * Returns `fields` itself when it contains no secret key, so that a line
 * without secrets costs no copy.
 */
export function redactSecretFields<Fields extends object>(fields: Fields): Fields {
  let redacted: Record<string, unknown> | undefined;
  for (const key in fields) {
    if (!Object.hasOwn(fields, key)) {
      continue;
    }
    const value: unknown = fields[key];
    const replacement = SECRET_KEYS.has(key) && value !== undefined ? CENSOR : redactedChild(value);
    if (replacement !== value) {
      redacted ??= { ...fields } as Record<string, unknown>;
      redacted[key] = replacement;
    }
  }
  return (redacted ?? fields) as Fields;
}

/**
 * Returns a copy of an object field whose own keys include a secret key, with
 * those values replaced, and any other value unchanged. The copy keeps the
 * prototype and every own property, so that an error still logs as one.
 */
function redactedChild(value: unknown): unknown {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return value;
  }
  // Looking up each secret key costs the same for any object, a large Buffer included.
  const secretKeys = SECRET_KEY_LIST.filter((key) => Object.prototype.propertyIsEnumerable.call(value, key));
  if (secretKeys.length === 0) {
    return value;
  }
  const copy = Object.create(Object.getPrototypeOf(value), Object.getOwnPropertyDescriptors(value)) as Record<string, unknown>;
  for (const key of secretKeys) {
    Object.defineProperty(copy, key, { value: CENSOR, enumerable: true, writable: true, configurable: true });
  }
  return copy;
}

/**
 * Exits with `code` once the log lines written so far have reached stdout,
 * or their write failed.
 *
 * pino flushes stdout synchronously at exit, but that flush leaves out the
 * lines of a write still in progress, which a busy or slow thread pool can
 * hold for any time. Those lines then came after the later ones, or never.
 * The flush also retries a failed write forever. A write that fails with
 * EPIPE (the reader of stdout is gone) before the exit makes pino stop
 * logging instead.
 */
export function exitAfterLogWrites(logger: Logger, code: number): void {
  logger.flush(() => process.exit(code));
}
