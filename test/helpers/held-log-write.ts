/**
 * Child process of the log write test. Run with `UV_THREADPOOL_SIZE=1` and
 * the path of a FIFO as its argument. Opening the FIFO for reading blocks the
 * only thread-pool thread, which the asynchronous stdout destination needs
 * for its writes. So the write of the first log line waits while a second
 * line is logged behind it, and then the process exits the way the service
 * does: after a stop, or with `failed-start` as the second argument, after a
 * start that failed. The thread is let go 500 ms later, or when the process exits.
 */
import { closeSync, constants, open, openSync } from "node:fs";
import { createLogger, exitAfterLogWrites } from "../../src/logger.js";
import { exitAfterFailedStart } from "../../src/start-failure.js";

const [fifo, exitPath = "stop"] = process.argv.slice(2);
if (fifo === undefined || !["stop", "failed-start"].includes(exitPath)) {
  throw new Error("usage: held-log-write.ts FIFO [stop|failed-start]");
}

let released = false;
/** Opens the FIFO for writing, which ends the open for reading that blocks the thread. */
function releaseThread(): void {
  if (!released) {
    released = true;
    closeSync(openSync(fifo!, constants.O_WRONLY | constants.O_NONBLOCK));
  }
}

// The descriptor stays open, so that a later open for writing still finds a reader.
open(fifo, "r", () => undefined);
const logger = createLogger("info");
logger.info("first");

// Registered after the logger's own exit handler, which writes the buffered lines.
process.on("exit", () => {
  releaseThread();
  // Gives the thread time to carry out a write still queued, so that it shows up after the lines written at exit.
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 200);
});
if (exitPath === "stop") {
  logger.info("second");
  exitAfterLogWrites(logger, 0);
} else {
  exitAfterFailedStart(new Error("storage is unreachable"), logger);
}
setTimeout(releaseThread, 500);
