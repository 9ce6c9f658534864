import { setTimeout as sleep } from "node:timers/promises";

import { Migrator, sql, type Kysely, type MigrationResultSet } from "kysely";
import type { Logger } from "pino";

import type { StoreDatabase } from "./database-schema.js";
import type { IdempotencyStore } from "./idempotency-store.js";
import type { IntegrationStore, SecretColumnsStore } from "./integration-store.js";
import { KyselyIdempotencyStore } from "./kysely-idempotency-store.js";
import { KyselyIntegrationStore } from "./kysely-integration-store.js";
import type { KeyCheckStore } from "./key-check-store.js";
import { KyselyKeyCheckStore } from "./kysely-key-check-store.js";
import { MissingSchemaError } from "./missing-schema-error.js";
import { createMigrationProvider, type StoreEngine } from "./migrations.js";
import {
  createPostgresDatabase,
  DEFAULT_POSTGRES_SCHEMA,
  describePostgresUrl,
  isPostgresUrl,
  MAX_SCHEMA_NAME_BYTES,
  type PostgresTimeouts,
} from "./postgres-database.js";
import { openSqliteDatabase, type SqliteSynchronous } from "./sqlite-database.js";
import { StorageError, summarizeDatabaseError } from "./storage-error.js";

/**
 * Attempts of the migration when a concurrent DROP SCHEMA disturbs it.
 * Kysely 0.28's migrator lists the tables of every schema through
 * `has_schema_privilege` and `pg_get_serial_sequence`, which fail with
 * SQLSTATE 3F000 (or 42P01 for a table of that schema, or 42703 for one of
 * its columns) when another session drops a schema during the listing.
 * Nothing is applied before that listing, so migrating again is safe.
 */
const MIGRATE_ATTEMPTS = 8;

/**
 * The PostgreSQL advisory lock that Kysely 0.28 takes while it migrates, for
 * the start-up log. It is one number per database, so deployments in other
 * schemas of the same database wait for each other too. Kysely waits for it
 * for up to an hour.
 */
const KYSELY_MIGRATION_LOCK = "pg_advisory_lock(3853314791062309107)";

/** How long migrating may wait before the service logs that it waits for the migration lock, in milliseconds. */
const MIGRATION_LOCK_WARNING_MS = 5_000;

/** Base pause before another attempt, in milliseconds: attempt n waits n to 2n times it, so concurrent openers spread out. */
const MIGRATE_RETRY_DELAY_MS = 20;

/** Returns whether a migration failed because another schema was dropped while the migrator read the catalog. */
function isDroppedSchemaError(outcome: MigrationResultSet, schema: string | undefined): boolean {
  const { error, results } = outcome;
  // A migration that ran and failed is a real failure, not a race of the listing.
  if (error === undefined || results?.some((result) => result.status === "Error")) {
    return false;
  }
  const { code, message } = summarizeDatabaseError(error);
  if (code === "3F000" || code === "42703") {
    return true;
  }
  return code === "42P01" && schema !== undefined && !message.includes(`"${schema}`);
}

/** Database selection and logger of {@link openStore}. */
export interface OpenStoreOptions {
  /**
   * `postgres://` or `postgresql://` URL, as pg accepts it. Missing or empty
   * selects SQLite in `dataDir`.
   */
  databaseUrl?: string;
  /** Directory of the SQLite file `smsgateway.db`, created with mode 0700 when missing. */
  dataDir: string;
  /**
   * PostgreSQL schema of the store's tables and of Kysely's migration
   * tables, created when missing unless `createMissingSchema` is false;
   * defaults to `public`. Lets several deployments or test runs share one
   * database. Rejected with SQLite.
   */
  schema?: string;
  /**
   * False rejects a PostgreSQL schema that does not exist yet, with
   * MissingSchemaError, before anything is created. True (the default)
   * creates it with the store's tables. Ignored with SQLite.
   */
  createMissingSchema?: boolean;
  /**
   * Takes the lock of `dataDir` for as long as the store is open, so that
   * another store opened with this option on the same folder, in this or
   * another process, fails with a StorageError of operation `lock` (see
   * `lockDataDir`). The service sets it. Off by
   * default, so one process may open several stores on one folder. Ignored
   * with PostgreSQL.
   */
  lockDataDir?: boolean;
  /** `synchronous` mode of SQLite; `normal` when unset. Ignored with PostgreSQL. */
  sqliteSynchronous?: SqliteSynchronous;
  /**
   * Timeouts of the PostgreSQL connections that replace those of
   * `DEFAULT_POSTGRES_TIMEOUTS`. The migrations at opening run without the
   * statement and query timeouts. Ignored with SQLite.
   */
  postgresTimeouts?: Partial<PostgresTimeouts>;
  logger: Logger;
}

/** An open store and the database it uses. */
export interface OpenedStore {
  /** Stores secrets exactly as given: wrap it in an EncryptingIntegrationStore. */
  store: IntegrationStore & SecretColumnsStore;
  /** Idempotency keys in the same database; closing `store` closes it too. */
  idempotency: IdempotencyStore;
  /** The encryption key checks and the key ids of the stored secrets, in the same database; closing `store` closes it too. */
  keyChecks: KeyCheckStore;
  /**
   * The database for logs, with no password: `sqlite:data/smsgateway.db` or
   * `postgres://user@host:5432/db`, plus `(schema name)` for a schema other
   * than `public`.
   */
  description: string;
}

/**
 * Opens the integration store and brings its schema up to date.
 *
 * Both databases get the same tables through Kysely's Migrator. Running it
 * again on an up-to-date database changes nothing. On PostgreSQL, Kysely
 * takes an advisory lock, so replicas that start together migrate one at a
 * time.
 *
 * @throws Error when the options are invalid, the PostgreSQL timeouts included.
 * @throws StorageError when the database cannot be opened, reached or
 *   migrated; the message names the database without its password. Its
 *   operation is `open` when the SQLite folder or file cannot be opened,
 *   `lock` when `lockDataDir` is set and the folder's lock cannot be taken,
 *   `connect` when the first query fails, and starts with `migrate` when a
 *   migration fails.
 * @throws MissingSchemaError when `createMissingSchema` is false and the
 *   PostgreSQL schema does not exist.
 */
export async function openStore(options: OpenStoreOptions): Promise<OpenedStore> {
  const { logger } = options;
  const databaseUrl = options.databaseUrl?.trim() ?? "";

  if (databaseUrl === "") {
    if (options.schema !== undefined) {
      throw new Error("the schema option applies only to PostgreSQL; remove it or set a postgres:// database URL");
    }
    const { db, description } = await openSqliteDatabase(options.dataDir, logger, options.sqliteSynchronous, options.lockDataDir === true);
    return prepareStore(db, "sqlite", undefined, description, logger);
  }

  if (!isPostgresUrl(databaseUrl)) {
    const scheme = /^[a-z][a-z0-9+.-]*:/i.exec(databaseUrl)?.[0] ?? "(none)";
    throw new Error(
      `unsupported database URL scheme ${scheme}: use postgres:// or postgresql://, or leave the URL empty for SQLite in the data directory`,
    );
  }

  const schema = options.schema ?? DEFAULT_POSTGRES_SCHEMA;
  const schemaBytes = Buffer.byteLength(schema);
  if (schemaBytes === 0 || schemaBytes > MAX_SCHEMA_NAME_BYTES) {
    throw new Error(`invalid PostgreSQL schema "${schema}": use 1 to ${MAX_SCHEMA_NAME_BYTES} bytes`);
  }

  const description = describePostgresUrl(databaseUrl, schema);
  const timeouts = options.postgresTimeouts ?? {};
  const db = await createPostgresDatabase(databaseUrl, description, logger, timeouts);
  // The migrations may wait for another replica's migration lock, or run long, so their
  // connection has neither timeout.
  const openMigrationDatabase = () =>
    createPostgresDatabase(databaseUrl, description, logger, { ...timeouts, statementTimeoutMs: 0, queryTimeoutMs: 0 });
  return prepareStore(db, "postgres", schema, description, logger, options.createMissingSchema ?? true, openMigrationDatabase);
}

/**
 * Checks the connection (and, unless `createMissingSchema`, the schema) and
 * migrates; closes `db` when any step fails. PostgreSQL migrates through a
 * database of its own, which `openMigrationDatabase` creates.
 */
async function prepareStore(
  db: Kysely<StoreDatabase>,
  engine: StoreEngine,
  schema: string | undefined,
  description: string,
  logger: Logger,
  createMissingSchema = true,
  openMigrationDatabase?: () => Promise<Kysely<StoreDatabase>>,
): Promise<OpenedStore> {
  try {
    await checkConnection(db, description);
    if (schema !== undefined && !createMissingSchema) {
      await checkSchemaExists(db, schema, description);
    }
    if (openMigrationDatabase === undefined) {
      await runMigrations(db, engine, schema, description, logger);
    } else {
      await migratePostgres(await openMigrationDatabase(), engine, schema, description, logger);
    }
  } catch (error) {
    await db.destroy().catch((closeError: unknown) => {
      logger.warn({ database: description, err: summarizeDatabaseError(closeError) }, "closing the database failed");
    });
    throw error;
  }

  const scoped = schema === undefined ? db : db.withSchema(schema);
  return {
    store: new KyselyIntegrationStore(scoped),
    idempotency: new KyselyIdempotencyStore(scoped),
    keyChecks: new KyselyKeyCheckStore(scoped, engine),
    description,
  };
}

async function checkConnection(db: Kysely<StoreDatabase>, description: string): Promise<void> {
  try {
    await sql`select 1`.execute(db);
  } catch (error) {
    throw new StorageError("connect", error, description);
  }
}

/**
 * Throws MissingSchemaError unless the PostgreSQL schema exists. Kysely's
 * Migrator would create it, so this runs before migrating.
 */
async function checkSchemaExists(db: Kysely<StoreDatabase>, schema: string, description: string): Promise<void> {
  let found: boolean;
  try {
    const { rows } = await sql<{ found: boolean }>`
      select exists (select 1 from pg_catalog.pg_namespace where nspname = ${schema}) as found
    `.execute(db);
    found = rows[0]?.found === true;
  } catch (error) {
    throw new StorageError("find schema", error, description);
  }
  if (!found) {
    throw new MissingSchemaError(schema);
  }
}

/**
 * Migrates on one connection of `migrationDb` with `statement_timeout`
 * off, whatever the role or database sets, because the statement timeout
 * would also cut the wait for the migration lock. Destroys `migrationDb`.
 */
async function migratePostgres(
  migrationDb: Kysely<StoreDatabase>,
  engine: StoreEngine,
  schema: string | undefined,
  description: string,
  logger: Logger,
): Promise<void> {
  try {
    await migrationDb.connection().execute(async (connection) => {
      await sql`set statement_timeout = 0`.execute(connection).catch((error: unknown) => {
        throw new StorageError("migrate", error, description);
      });
      const waiting = setTimeout(() => {
        logger.warn(
          { database: description, lock: KYSELY_MIGRATION_LOCK },
          "waiting for the database migration lock, which another replica holds while it migrates",
        );
      }, MIGRATION_LOCK_WARNING_MS);
      try {
        await runMigrations(connection, engine, schema, description, logger);
      } finally {
        clearTimeout(waiting);
      }
    });
  } finally {
    await migrationDb.destroy().catch((closeError: unknown) => {
      logger.warn({ database: description, err: summarizeDatabaseError(closeError) }, "closing the migration connection failed");
    });
  }
}

/** Brings the schema up to date with Kysely's Migrator, logging each migration applied. */
async function runMigrations(
  db: Kysely<StoreDatabase>,
  engine: StoreEngine,
  schema: string | undefined,
  description: string,
  logger: Logger,
): Promise<void> {
  const migrator = new Migrator({
    db,
    provider: createMigrationProvider(engine, schema),
    ...(schema === undefined ? {} : { migrationTableSchema: schema }),
  });

  // Kysely 0.28 documents that migrateToLatest never throws. It returns the
  // error and a result per migration instead.
  let outcome = await migrator.migrateToLatest();
  for (let attempt = 1; attempt < MIGRATE_ATTEMPTS && isDroppedSchemaError(outcome, schema); attempt++) {
    logger.warn(
      { database: description, attempt, err: summarizeDatabaseError(outcome.error) },
      "another schema was dropped while the migrator read the catalog; migrating again",
    );
    await sleep(MIGRATE_RETRY_DELAY_MS * attempt * (1 + Math.random()));
    outcome = await migrator.migrateToLatest();
  }
  const { error, results = [] } = outcome;

  for (const result of results) {
    if (result.status === "Success") {
      logger.info({ database: description, migration: result.migrationName }, "applied database migration");
    }
  }

  if (error !== undefined) {
    const failed = results.find((result) => result.status === "Error")?.migrationName;
    throw new StorageError(failed === undefined ? "migrate" : `migrate ${failed}`, error, description);
  }
}

