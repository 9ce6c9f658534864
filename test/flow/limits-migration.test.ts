import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";

import { Migrator, type Kysely } from "kysely";
import { afterEach, describe, expect, test } from "vitest";

import { createMigrationProvider, type StoreEngine } from "../../src/store/migrations.js";
import { openStore } from "../../src/store/open-store.js";
import { createPostgresDatabase } from "../../src/store/postgres-database.js";
import { openSqliteDatabase } from "../../src/store/sqlite-database.js";
import { sampleFields, silentLogger } from "../store/integration-fixtures.js";
import { dropSchema, SKIP_POSTGRES, TEST_DATABASE_URL, uniqueSchemaName } from "../store/postgres-test-database.js";

/** A row as the first migration defined it, before the limit columns. */
const ROW_BEFORE_LIMITS = {
  id: "old-row",
  display_name: "Before limits",
  base_url: "https://gateway.example/sms",
  api_key_header: "X-API-KEY",
  api_key: "api-key-0123456789",
  secret_key_header: "",
  secret_key: "",
  default_sender: "SMSGW",
  id_path: "data.id",
  date_path: "data.date",
  authenticate_by_token: 0,
  auth_url: "",
  token_key: "",
  create_time: "2026-01-01T00:00:00.000Z",
  update_time: "2026-01-01T00:00:00.000Z",
  version: 1,
};

/** Brings a database to `0001_create_integrations` only and inserts one row, then closes it. */
async function createAtFirstMigration(db: Kysely<unknown>, engine: StoreEngine, schema?: string): Promise<void> {
  try {
    const migrator = new Migrator({
      db,
      provider: createMigrationProvider(engine, schema),
      ...(schema === undefined ? {} : { migrationTableSchema: schema }),
    });
    const { error } = await migrator.migrateTo("0001_create_integrations");
    expect(error).toBeUndefined();

    const scoped = (schema === undefined ? db : db.withSchema(schema)) as Kysely<{ integrations: typeof ROW_BEFORE_LIMITS }>;
    await scoped.insertInto("integrations").values(ROW_BEFORE_LIMITS).execute();
  } finally {
    await db.destroy();
  }
}

async function expectUpgradedRow(open: () => ReturnType<typeof openStore>): Promise<void> {
  const { store } = await open();
  try {
    const upgraded = await store.get("old-row");
    expect(upgraded).toMatchObject({ displayName: "Before limits", maxConcurrentSends: 0, maxSendsPerSecond: 0 });

    const updated = await store.update("old-row", sampleFields({ maxConcurrentSends: 4, maxSendsPerSecond: 1.5 }));
    expect(updated).toMatchObject({ maxConcurrentSends: 4, maxSendsPerSecond: 1.5 });
  } finally {
    await store.close();
  }
}

describe("migration 0002_integration_limits", () => {
  const cleanups: (() => Promise<void>)[] = [];

  afterEach(async () => {
    for (const cleanup of cleanups.splice(0)) {
      await cleanup();
    }
  });

  test("adds limits of 0 to SQLite rows", async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), "smsgateway-migration-"));
    cleanups.push(() => rm(dataDir, { recursive: true, force: true }));
    const { db } = await openSqliteDatabase(dataDir, silentLogger());
    await createAtFirstMigration(db as Kysely<unknown>, "sqlite");

    await expectUpgradedRow(() => openStore({ dataDir, logger: silentLogger() }));
  });

  test.skipIf(SKIP_POSTGRES)("adds limits of 0 to PostgreSQL rows", async () => {
    const schema = uniqueSchemaName();
    cleanups.push(() => dropSchema(schema));
    const db = await createPostgresDatabase(TEST_DATABASE_URL, "test database", silentLogger());
    await createAtFirstMigration(db as Kysely<unknown>, "postgres", schema);

    await expectUpgradedRow(() =>
      openStore({ databaseUrl: TEST_DATABASE_URL, schema, dataDir: "/nonexistent/smsgateway-unused", logger: silentLogger() }),
    );
  });
});
