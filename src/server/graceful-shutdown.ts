import type { Logger } from "pino";
import { untilAborted } from "../until-aborted.js";
import type { HealthStatusBoard } from "./health-service.js";
import type { RunningServer } from "./one-port-server.js";
import type { ServiceLifecycle } from "./service-lifecycle.js";

/** Time cancelled calls get to send their error before their connections close, in milliseconds. */
const CANCEL_FLUSH_MS = 1_000;

/**
 * Time storage gets to close, in milliseconds. Closing a PostgreSQL
 * connection waits for the server to close it too, which a server that no
 * longer responds never does.
 */
export const STORAGE_CLOSE_TIMEOUT_MS = 5_000;

/** The parts of a running service that a graceful shutdown stops, in order. */
export interface ShutdownParts {
  lifecycle: ServiceLifecycle;
  health: HealthStatusBoard;
  server: RunningServer;
  /** Closed after the server, so calls in progress can still send. */
  dispatcher: { close(): Promise<void> };
  /** Closed last. */
  store: { close(): Promise<void> };
  /** Storage location for the log, without a password. */
  storage: string;
  logger: Logger;
}

/**
 * Shuts the service down gracefully. Health turns NOT_SERVING and new calls
 * are rejected at once. Calls in progress get `graceMs` to finish; then the
 * rest are cancelled and get 1 s to send their error before their
 * connections close. Then the dispatcher and storage close. Storage gets
 * {@link STORAGE_CLOSE_TIMEOUT_MS}, after which the shutdown ends without it.
 */
export async function shutDownGracefully(parts: ShutdownParts, graceMs: number): Promise<void> {
  const { lifecycle, logger } = parts;
  lifecycle.beginShutdown();
  parts.health.shutdown();
  logger.info({ callsInProgress: lifecycle.callsInProgress, graceMs }, "shutdown started: not serving, no new calls");

  const cancelTimer = setTimeout(() => {
    logger.warn({ callsInProgress: lifecycle.callsInProgress, graceMs }, "shutdown grace period ended: cancelling the calls in progress");
    lifecycle.forceStop();
  }, graceMs);
  try {
    await parts.server.close(graceMs + CANCEL_FLUSH_MS);
  } finally {
    clearTimeout(cancelTimer);
  }
  logger.info({ callsInProgress: lifecycle.callsInProgress }, "connections closed");

  await parts.dispatcher.close();
  const timeout = AbortSignal.timeout(STORAGE_CLOSE_TIMEOUT_MS);
  try {
    await untilAborted(parts.store.close(), timeout);
  } catch (error) {
    if (!timeout.aborted || error !== timeout.reason) {
      throw error;
    }
    logger.warn(
      { storage: parts.storage, timeoutMs: STORAGE_CLOSE_TIMEOUT_MS },
      "storage did not close in time; exiting without waiting for the database",
    );
    return;
  }
  logger.info({ storage: parts.storage }, "storage closed");
}
