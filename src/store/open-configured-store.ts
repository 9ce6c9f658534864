import path from "node:path";

import type { Logger } from "pino";

import { ConfigError } from "../config/load-config.js";
import { unwritableFileError, unwritableFolderError } from "../config/path-errors.js";
import type { Config } from "../config/settings.js";
import { LOCK_FILE_NAME, LOCK_OPERATION } from "./data-dir-lock.js";
import { MissingSchemaError } from "./missing-schema-error.js";
import { openStore, type OpenedStore } from "./open-store.js";
import { describePostgresUrl } from "./postgres-database.js";
import { SQLITE_FILE_NAME } from "./sqlite-database.js";
import { StorageError } from "./storage-error.js";

/** Error codes of a SQLite folder or file that the service cannot create or write. */
const UNWRITABLE_CODES: ReadonlySet<string> = new Set([
  "EACCES",
  "EPERM",
  "ENOENT",
  "ENOTDIR",
  "EROFS",
  "ENOSPC",
  "SQLITE_CANTOPEN",
  "SQLITE_READONLY_DIRECTORY",
]);

/**
 * Returns whether a SQLite error code means that SQLite opened the file but
 * cannot write it or its -wal and -shm files, as opposed to the folder.
 */
function isReadOnlyFile(code: string | undefined): boolean {
  return code !== undefined && code.startsWith("SQLITE_READONLY") && code !== "SQLITE_READONLY_DIRECTORY";
}

/** The program that opens the store: the service, or `npm run reencrypt`. */
export type StoreOpener = "service" | "reencrypt";

/**
 * Opens the store that the settings select, as the service and
 * `npm run reencrypt` do: PostgreSQL at DATABASE_URL in DATABASE_SCHEMA,
 * else the SQLite file in DATA_DIR.
 *
 * With SQLite, the service takes the lock of DATA_DIR until the store
 * closes, so a second service on the same folder fails at once. reencrypt
 * does not take it: it changes no decrypted value and no version, so the
 * cached integrations of a running service stay right, and keys rotate
 * without stopping the service. With
 * PostgreSQL, the service creates a missing schema and reencrypt rejects it,
 * because a mistyped schema would look like an empty store.
 *
 * @throws ConfigError naming the setting as the operator gave it when the
 *   SQLite folder or file cannot be written, another process has the lock
 *   of DATA_DIR, PostgreSQL cannot be reached, or reencrypt finds no such
 *   schema.
 * @throws StorageError when a migration or another step fails.
 */
export async function openConfiguredStore(config: Config, logger: Logger, opener: StoreOpener): Promise<OpenedStore> {
  const postgres = config.databaseUrl !== "";
  try {
    return await openStore({
      databaseUrl: config.databaseUrl,
      dataDir: config.dataDir,
      schema: postgres ? config.databaseSchema : undefined,
      createMissingSchema: opener === "service",
      lockDataDir: opener === "service",
      sqliteSynchronous: config.sqliteSynchronous,
      logger,
    });
  } catch (error) {
    const { names } = config;
    if (error instanceof MissingSchemaError) {
      throw new ConfigError(
        `${names.databaseSchema} "${error.schema}": no such schema in ${describePostgresUrl(config.databaseUrl)}, and nothing was created. ` +
          `The service creates the schema and its tables when it first starts with this ${names.databaseSchema}; ` +
          `check the name, which is case-sensitive, and ${names.databaseUrl}.`,
      );
    }
    if (!(error instanceof StorageError)) {
      throw error;
    }
    if (!postgres && error.operation === LOCK_OPERATION) {
      throw dataDirLockError(config, error);
    }
    if (postgres && error.operation === "connect") {
      const database = error.target ?? "the database";
      const code = error.code === undefined ? "" : ` (${error.code})`;
      throw new ConfigError(
        `${names.databaseUrl} ${database}: cannot connect to PostgreSQL: ${error.driverMessage}${code}; check that PostgreSQL ` +
          "runs and accepts connections at the URL's host and port, and that the URL's user, password and database are right.",
      );
    }
    const file = path.join(config.dataDir, SQLITE_FILE_NAME);
    if (!postgres && error.operation === "open" && error.code?.startsWith("SQLITE_BUSY") === true) {
      throw new ConfigError(
        `${names.dataDir} ${config.dataDir}: the SQLite database ${file} is locked by another process (${error.code}); ` +
          `stop the other process that writes it (another service on the same data folder, or a tool in a transaction), or set ${names.dataDir} to a folder of this service's own.`,
      );
    }
    if (!postgres && error.dataCorrupted) {
      throw new ConfigError(
        `${names.dataDir} ${config.dataDir}: the SQLite database ${file} is damaged or is not a SQLite database (${error.code}); ` +
          `restore it from a backup, or set ${names.dataDir} to another folder to start with an empty store.`,
      );
    }
    if (!postgres && error.operation === "open" && isReadOnlyFile(error.code)) {
      throw unwritableFileError(names.dataDir, config.dataDir, `the SQLite database ${file}`, "its -wal and -shm files when they exist", error);
    }
    if (!postgres && error.operation === "open" && UNWRITABLE_CODES.has(error.code ?? "")) {
      throw unwritableFolderError(names.dataDir, config.dataDir, `create or open the SQLite database ${file}`, error);
    }
    throw error;
  }
}

/** Returns the start-up error for a data folder whose lock cannot be taken. */
function dataDirLockError(config: Config, error: StorageError): ConfigError {
  const { names } = config;
  const lockFile = path.join(config.dataDir, LOCK_FILE_NAME);
  if (error.code?.startsWith("SQLITE_BUSY") !== true) {
    return new ConfigError(
      `${names.dataDir} ${config.dataDir}: cannot take the lock file ${lockFile}: ${error.driverMessage} (${error.code ?? "no code"}); ` +
        "make it writable by the user that runs the service. It contains no data, so it may also be deleted while no service uses the folder.",
    );
  }

  return new ConfigError(
    `${names.dataDir} ${config.dataDir}: the data folder is in use by another service process, which has the lock on ${lockFile}. ` +
      `Stop that process, set ${names.dataDir} to another folder, or set ${names.databaseUrl} to store the data in PostgreSQL, which several service processes can share.`,
  );
}
