import { closeSync, openSync } from "node:fs";
import { stat } from "node:fs/promises";
import type { Logger } from "pino";

/** Mode of a database file that the service creates: read and write for its owner only. */
const DATABASE_FILE_MODE = 0o600;

/**
 * Creates the SQLite database file with mode 0600 when it is missing, or
 * logs a warning when the existing file is accessible to other users. The
 * file stores encrypted gateway secrets and the outcomes of idempotency
 * keys, and SQLite would create it with its default mode 0644 less the
 * umask. SQLite's Unix VFS gives the -wal and -shm files that it creates
 * later the database file's mode, which the store tests check.
 *
 * When the file cannot be created for another reason, such as a read-only
 * folder, this function leaves it, and SQLite's open then fails with its own
 * error.
 */
export async function prepareDatabaseFile(file: string, logger: Logger): Promise<void> {
  if (createOwnerOnlyFile(file) !== "exists") {
    return;
  }

  const { mode } = await stat(file);
  if ((mode & 0o077) !== 0) {
    logger.warn(
      { file, mode: `0${(mode & 0o777).toString(8)}` },
      "database file is accessible to other users; it stores encrypted gateway secrets and send outcomes, so consider chmod 600 on it and on its -wal and -shm files",
    );
  }
}

/**
 * Creates an empty file with mode 0600 unless it exists. Returns `created`,
 * `exists`, or `failed` for any other error, which opening the file later
 * reports again.
 */
export function createOwnerOnlyFile(file: string): "created" | "exists" | "failed" {
  try {
    // O_EXCL, so that a file created at the same moment by another process keeps its own mode.
    closeSync(openSync(file, "wx", DATABASE_FILE_MODE));
    return "created";
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EEXIST" ? "exists" : "failed";
  }
}
