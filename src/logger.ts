import pino, { type DestinationStream, type Logger } from "pino";
import type { LogLevel } from "./config/settings.js";

/**
 * Keys whose values are replaced in every log line, at the top level and one
 * object deep. Code never logs secrets on purpose; this catches mistakes.
 */
const SECRET_KEYS = ["apiKey", "secretKey", "api_key", "secret_key", "token", "authorization", "password"];

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
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: { paths: SECRET_KEYS.flatMap((key) => [key, `*.${key}`]), censor: "[REDACTED]" },
  };
  // An asynchronous stdout gathers the lines written during one write into
  // the next write, instead of blocking once per line. minLength 1 writes
  // each line at once, as 0 does, and makes `flush(callback)` wait for the
  // writes in progress, which sonic-boom skips at 0 (see exitAfterLogWrites).
  return pino(options, destination ?? pino.destination({ dest: 1, sync: false, minLength: 1 }));
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
