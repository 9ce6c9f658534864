import pino, { type DestinationStream, type Logger } from "pino";
import type { LogLevel } from "./config/settings.js";
import { requestIdMixin } from "./observability/request-id.js";

/**
 * Keys whose values are replaced in every log line, at the top level and one
 * object deep. Code never logs secrets on purpose; this catches mistakes.
 */
const SECRET_KEYS = ["apiKey", "secretKey", "api_key", "secret_key", "token", "authorization", "password"];

/**
 * Creates the service logger: JSON lines, ISO times, secrets redacted, and
 * the request id on every line written during a call.
 */
export function createLogger(level: LogLevel, destination?: DestinationStream): Logger {
  const options = {
    level,
    base: { service: "smsgateway" },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: { paths: SECRET_KEYS.flatMap((key) => [key, `*.${key}`]), censor: "[REDACTED]" },
    mixin: requestIdMixin,
  };
  return destination === undefined ? pino(options) : pino(options, destination);
}
