import { sql, type Kysely, type Migration, type MigrationProvider } from "kysely";

import { migrateIdempotency } from "./idempotency-migration.js";
import { createChangeNotifyTrigger, notifyRenamedIntegrationIds } from "./integration-change-migration.js";
import { createKeyChecksTable } from "./key-check-migration.js";
import { DEFAULT_POSTGRES_SCHEMA } from "./postgres-database.js";

/** The database engines the store runs on. */
export type StoreEngine = "sqlite" | "postgres";

/** Text columns of `integrations` besides the id, all `NOT NULL`. */
const TEXT_COLUMNS = [
  "display_name",
  "base_url",
  "api_key_header",
  "api_key",
  "secret_key_header",
  "secret_key",
  "default_sender",
  "id_path",
  "date_path",
  "auth_url",
  "token_key",
  "create_time",
  "update_time",
] as const;

async function createIntegrationsTable(db: Kysely<unknown>, engine: StoreEngine): Promise<void> {
  let table = db.schema.createTable("integrations").addColumn("id", "text", (column) => {
    // PostgreSQL compares text by the database's collation, which can order
    // `a-b` after `ab`. Collation "C" gives byte order, as SQLite's default
    // BINARY does, so paging by `id > afterId` returns the same pages on both.
    const ordered = engine === "postgres" ? column.modifyFront(sql`collate "C"`) : column;
    return ordered.primaryKey();
  });

  for (const name of TEXT_COLUMNS) {
    table = table.addColumn(name, "text", (column) => column.notNull());
  }

  table = table
    .addColumn("authenticate_by_token", "integer", (column) =>
      column.notNull().check(sql`authenticate_by_token in (0, 1)`),
    )
    .addColumn("version", "integer", (column) => column.notNull().check(sql`version >= 1`));

  // STRICT makes SQLite reject values of the wrong type instead of storing
  // them as they come, as PostgreSQL does.
  if (engine === "sqlite") {
    table = table.modifyEnd(sql`strict`);
  }

  await table.execute();
}

/**
 * Adds the per-integration flow-control limits, 0 (the service default) on
 * existing rows. SQLite's STRICT tables know REAL, PostgreSQL calls the same
 * 8-byte float DOUBLE PRECISION.
 */
async function addIntegrationLimits(db: Kysely<unknown>, engine: StoreEngine): Promise<void> {
  await db.schema
    .alterTable("integrations")
    .addColumn("max_concurrent_sends", "integer", (column) =>
      column.notNull().defaultTo(0).check(sql`max_concurrent_sends >= 0`),
    )
    .execute();
  await db.schema
    .alterTable("integrations")
    .addColumn("max_sends_per_second", engine === "postgres" ? "double precision" : "real", (column) =>
      column.notNull().defaultTo(0).check(sql`max_sends_per_second >= 0`),
    )
    .execute();
}

/**
 * Builds the provider of the store's migrations, defined in code so the
 * service needs no migration files next to it at run time.
 *
 * Kysely runs them in name order and records the applied names, so released
 * migrations must never be renamed or edited. Change the schema by adding a
 * migration with a later name. With `schema` set (PostgreSQL only), every
 * table is created in that schema.
 */
export function createMigrationProvider(engine: StoreEngine, schema?: string): MigrationProvider {
  const scoped = (db: Kysely<unknown>) => (schema === undefined ? db : db.withSchema(schema));

  const migrations: Record<string, Migration> = {
    "0001_create_integrations": {
      up: (db) => createIntegrationsTable(scoped(db), engine),
    },
    "0002_integration_limits": {
      up: (db) => addIntegrationLimits(scoped(db), engine),
    },
    "0003_idempotency": {
      up: (db) => migrateIdempotency(scoped(db), engine),
    },
    // SQLite has one writing process, which needs no notifications, so the migration does nothing there.
    "0004_integration_change_notify": {
      up: async (db) => {
        if (engine === "postgres") {
          await createChangeNotifyTrigger(db, schema ?? DEFAULT_POSTGRES_SCHEMA);
        }
      },
    },
    "0005_integration_change_notify_renamed_id": {
      up: async (db) => {
        if (engine === "postgres") {
          await notifyRenamedIntegrationIds(db, schema ?? DEFAULT_POSTGRES_SCHEMA);
        }
      },
    },
    "0006_encryption_key_checks": {
      up: (db) => createKeyChecksTable(scoped(db), engine),
    },
  };

  return { getMigrations: async () => migrations };
}
