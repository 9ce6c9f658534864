import { stat } from "node:fs/promises";
import path from "node:path";

import Database from "better-sqlite3";
import { Kysely } from "kysely";
import type { Logger } from "pino";

import { makeDirectory } from "../make-directory.js";
import { prepareDatabaseFile } from "./database-file-mode.js";
import { lockDataDir, type DataDirLock } from "./data-dir-lock.js";
import type { StoreDatabase } from "./database-schema.js";
import { GroupCommitSqliteDialect } from "./sqlite-group-commit.js";
import { withStatementCache } from "./sqlite-statement-cache.js";
import { StorageError } from "./storage-error.js";

/** Name of the database file inside the data directory. */
export const SQLITE_FILE_NAME = "smsgateway.db";

/**
 * How long a statement waits for another connection's write lock before it
 * fails with SQLITE_BUSY, in milliseconds.
 *
 * NOTE: better-sqlite3 runs statements synchronously, so while another
 * process holds the lock, the wait blocks the event loop for up to this long.
 */
const SQLITE_BUSY_TIMEOUT_MS = 5_000;

async function warnIfShared(dataDir: string, logger: Logger): Promise<void> {
  const { mode } = await stat(dataDir);
  if ((mode & 0o077) !== 0) {
    logger.warn(
      { dataDir, mode: `0${(mode & 0o777).toString(8)}` },
      "data directory is accessible to other users; it stores gateway secrets, so consider chmod 700",
    );
  }
}

/**
 * Starts a write transaction, writes, and rolls it back. SQLite opens a
 * file it may not write read-only without an error, and its reads then
 * work, so without this check such a file would fail only at the first
 * write of a call.
 *
 * @throws the driver's error, SQLITE_READONLY for such a file.
 */
function checkWritable(database: Database.Database): void {
  database.exec("BEGIN IMMEDIATE");
  try {
    database.exec("CREATE TABLE smsgateway_write_check (id INTEGER)");
  } finally {
    if (database.inTransaction) {
      database.exec("ROLLBACK");
    }
  }
}

/**
 * SQLite's `synchronous` modes that the service offers. In WAL mode,
 * `normal` syncs the log at checkpoints and `full` at every commit.
 */
export const SQLITE_SYNCHRONOUS_MODES = ["normal", "full"] as const;
export type SqliteSynchronous = (typeof SQLITE_SYNCHRONOUS_MODES)[number];

/** An opened SQLite database and how to name it in logs. */
export interface OpenedSqliteDatabase {
  db: Kysely<StoreDatabase>;
  /** `sqlite:` followed by the file path, for example `sqlite:data/smsgateway.db`. */
  description: string;
}

/**
 * Opens (and creates when missing) `smsgateway.db` in `dataDir`, in WAL mode
 * with the given `synchronous` mode.
 *
 * NOTE: better-sqlite3 runs each statement on the event loop, so a commit in
 * `full` mode blocks every call for the length of an fsync.
 *
 *
 * The data directory is created with mode 0700 and the file with mode 0600
 * because the file contains gateway secrets. An existing directory or file
 * keeps its mode, and the function logs a warning when its group or other
 * users have any access to it.
 *
 * With `lock`, the function also takes the data directory's lock (see
 * {@link lockDataDir}) once the file is open and writable, and destroying
 * the returned Kysely instance releases it.
 *
 * @throws StorageError when the directory or the file cannot be opened,
 *   or the file cannot be written; with `lock`, StorageError with operation
 *   `lock` when the lock cannot be taken.
 */
export async function openSqliteDatabase(
  dataDir: string,
  logger: Logger,
  synchronous: SqliteSynchronous = "normal",
  lock = false,
): Promise<OpenedSqliteDatabase> {
  const file = path.join(dataDir, SQLITE_FILE_NAME);
  const description = `sqlite:${file}`;

  let database: Database.Database;
  try {
    await makeDirectory(dataDir, 0o700);
    await warnIfShared(dataDir, logger);
    await prepareDatabaseFile(file, logger);
    database = new Database(file);
  } catch (error) {
    throw new StorageError("open", error, description);
  }

  try {
    // WAL lets readers run while one connection writes.
    const journalMode: unknown = database.pragma("journal_mode = WAL", { simple: true });
    if (journalMode !== "wal") {
      logger.warn({ database: description, journalMode }, "SQLite did not switch to WAL journal mode");
    }
    database.pragma(`busy_timeout = ${SQLITE_BUSY_TIMEOUT_MS}`);
    database.pragma("foreign_keys = ON");
    database.pragma(`synchronous = ${synchronous.toUpperCase()}`);
    checkWritable(database);
  } catch (error) {
    database.close();
    throw new StorageError("open", error, description);
  }

  let dataDirLock: DataDirLock | undefined;
  if (lock) {
    try {
      dataDirLock = lockDataDir(dataDir);
    } catch (error) {
      database.close();
      throw error;
    }
  }

  const statements = withStatementCache(database);
  const closeAndUnlock = {
    prepare: (sql: string) => statements.prepare(sql),
    close() {
      try {
        statements.close();
      } finally {
        dataDirLock?.release();
      }
    },
  };
  const dialect = new GroupCommitSqliteDialect(database, closeAndUnlock);
  return { db: new Kysely<StoreDatabase>({ dialect }), description };
}
