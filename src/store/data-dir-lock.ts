import path from "node:path";

import Database from "better-sqlite3";

import { createOwnerOnlyFile } from "./database-file-mode.js";
import { StorageError } from "./storage-error.js";

/** Name of the lock file inside the data directory. The file contains no data. */
export const LOCK_FILE_NAME = "smsgateway.lock";

/** The operation of the StorageError that {@link lockDataDir} throws. */
export const LOCK_OPERATION = "lock";

/** A data directory's lock, held until {@link release} or the end of the process. */
export interface DataDirLock {
  /** Path of the lock file. */
  readonly file: string;
  /** Releases the lock. Later calls do nothing. */
  release(): void;
}

/**
 * Takes the lock of a data directory, so that one process at a time uses
 * its SQLite store. Fails at once, without waiting, when another holder has it.
 *
 * The lock is an exclusive SQLite transaction on `DATA_DIR/smsgateway.lock`
 * that stays open until {@link DataDirLock.release}. SQLite takes it with a
 * POSIX record lock (fcntl), which the operating system releases when the
 * process ends, kill -9 included, so a crashed holder never leaves a stale
 * lock. SQLite also tracks its locks within one process, so a second
 * connection of the same process fails too.
 *
 * The transaction creates a table that it never commits, to prove that the
 * file is writable. A read-only file would be opened read-only, and two
 * processes could then both lock it. The journal stays in memory, so no
 * `-journal` file is written, and the file stays empty.
 *
 * NOTE: a process that has the lock must not open and close the lock file
 * by other means (such as `fs.readFile`), because closing any descriptor of
 * a file releases every POSIX lock that the process has on it. Network
 * file systems that do not implement POSIX locks let two holders in.
 *
 * @throws StorageError with operation `lock`: code `SQLITE_BUSY` when
 *   another connection holds the lock, another code when the file cannot be
 *   created, opened or written.
 */
export function lockDataDir(dataDir: string): DataDirLock {
  const file = path.join(dataDir, LOCK_FILE_NAME);
  // SQLite would create the file readable by every user, and another local user who can reach
  // the folder could then hold a read lock on it and keep the service from starting. The file is
  // closed before the lock is taken, so closing it releases no lock of this process.
  createOwnerOnlyFile(file);
  let database: Database.Database;
  try {
    database = new Database(file, { timeout: 0 });
  } catch (error) {
    throw new StorageError(LOCK_OPERATION, error, `sqlite:${file}`);
  }

  try {
    database.pragma("journal_mode = MEMORY");
    database.exec("BEGIN EXCLUSIVE");
    database.exec("CREATE TABLE smsgateway_lock (id INTEGER)");
  } catch (error) {
    database.close();
    throw new StorageError(LOCK_OPERATION, error, `sqlite:${file}`);
  }

  return {
    file,
    release() {
      // Closing rolls the open transaction back and releases the lock.
      if (database.open) {
        database.close();
      }
    },
  };
}

