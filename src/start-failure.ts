import type { Logger } from "pino";

import { ConfigError } from "./config/load-config.js";
import { exitAfterLogWrites } from "./logger.js";

/** Exit code of a start that failed on a setting the operator must change (a ConfigError). */
export const EXIT_CONFIG_ERROR = 2;

/** Exit code of a start that failed for any other reason, such as unreachable storage. */
export const EXIT_START_FAILED = 1;

/**
 * Reports a failed start and exits with {@link EXIT_CONFIG_ERROR} or
 * {@link EXIT_START_FAILED}.
 *
 * The reason goes to stderr, where it reaches an operator at a terminal.
 * Once the logger exists, it is also logged as `failed to start`, and the
 * exit waits for the log writes, so the lines of the failed start reach
 * stdout complete and in order, as at a normal stop.
 */
export function exitAfterFailedStart(error: unknown, logger: Logger | undefined): void {
  const configError = error instanceof ConfigError;
  const exitCode = configError ? EXIT_CONFIG_ERROR : EXIT_START_FAILED;
  const message = error instanceof Error ? error.message : String(error);
  process.stderr.write(`smsgateway: ${configError ? "" : "failed to start: "}${message}\n`);
  if (logger === undefined) {
    process.exit(exitCode);
  }

  // Only the message, because a pino `err` field serialises every property of an error, a driver's included.
  logger.error({ error: message, exitCode }, "failed to start");
  exitAfterLogWrites(logger, exitCode);
}
