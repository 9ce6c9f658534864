import type { Logger } from "pino";

import { startApp, type App } from "./app.js";
import { loadConfig } from "./config/load-config.js";
import type { Config } from "./config/settings.js";
import { createLogger, exitAfterLogWrites } from "./logger.js";
import { exitAfterFailedStart } from "./start-failure.js";

async function main(): Promise<void> {
  const loaded = loadConfig(process.argv.slice(2), process.env);
  if (loaded.kind === "help") {
    process.stdout.write(`${loaded.text}\n`);
    return;
  }

  const { config } = loaded;
  const logger = createLogger(config.logLevel);
  await serve(config, logger).catch((error: unknown) => exitAfterFailedStart(error, logger));
}

/** Exit code when a signal ends a start-up that has not finished. */
const EXIT_START_ABANDONED = 1;

/**
 * Starts the service, logs its address, and shuts it down on SIGTERM or
 * SIGINT. A signal that arrives while the service starts shuts it down as
 * soon as it has started. A start-up that does not finish within
 * SHUTDOWN_GRACE_MS of that signal, or a second signal while it starts,
 * ends the process with exit code 1.
 */
async function serve(config: Config, logger: Logger): Promise<void> {
  let app: App | undefined;
  let signalDuringStart: NodeJS.Signals | undefined;
  let startAbandoned = false;
  let abandonTimer: NodeJS.Timeout | undefined;
  let stopping = false;

  const abandonStart = (signal: NodeJS.Signals, reason: string) => {
    startAbandoned = true;
    logger.warn({ signal, graceMs: config.shutdownGraceMs }, reason);
    exitAfterLogWrites(logger, EXIT_START_ABANDONED);
  };
  const signalWhileStarting = (signal: NodeJS.Signals) => {
    if (startAbandoned) {
      return;
    }
    if (signalDuringStart !== undefined) {
      abandonStart(signal, "another signal during start-up; exiting without waiting for the start-up to finish");
      return;
    }
    signalDuringStart = signal;
    logger.info({ signal, graceMs: config.shutdownGraceMs }, "shutdown requested during start-up; stopping once started");
    abandonTimer = setTimeout(
      () => abandonStart(signal, "start-up did not finish within SHUTDOWN_GRACE_MS of the signal; exiting"),
      config.shutdownGraceMs,
    );
  };
  const stop = (started: App, signal: NodeJS.Signals) => {
    if (stopping) {
      // Wrappers such as npm and tsx may pass on the same Ctrl-C once more,
      // so a repeated signal must not cut the grace period short.
      logger.info({ signal }, "shutdown already in progress");
      return;
    }
    stopping = true;
    logger.info({ signal, graceMs: config.shutdownGraceMs }, "shutting down");
    started.close(config.shutdownGraceMs).then(
      () => {
        logger.info("stopped");
        exitAfterLogWrites(logger, 0);
      },
      (error: unknown) => {
        logger.error({ err: error }, "shutdown failed");
        exitAfterLogWrites(logger, 1);
      },
    );
  };
  const onSignal = (signal: NodeJS.Signals) => (app === undefined ? signalWhileStarting(signal) : stop(app, signal));
  process.on("SIGTERM", onSignal);
  process.on("SIGINT", onSignal);

  let started: App;
  try {
    started = await startApp(config, logger);
  } finally {
    clearTimeout(abandonTimer);
  }
  if (startAbandoned) {
    return;
  }
  app = started;
  const scheme = app.server.tls ? "https" : "http";
  const host = app.server.host.includes(":") ? `[${app.server.host}]` : app.server.host;
  logger.info(
    { address: `${scheme}://${host}:${app.server.port}`, storage: app.storage, tls: app.server.tls },
    "smsgateway listening for gRPC, Connect and gRPC-Web",
  );

  if (signalDuringStart !== undefined) {
    stop(app, signalDuringStart);
  }
}

// A failure that reaches this point came before the logger existed (an invalid setting), so no log write is pending.
main().catch((error: unknown) => exitAfterFailedStart(error, undefined));
