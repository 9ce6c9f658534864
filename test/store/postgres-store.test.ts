import pg from "pg";
import { afterEach, beforeAll, describe, expect, test } from "vitest";

import { openStore } from "../../src/store/open-store.js";
import { StorageError } from "../../src/store/storage-error.js";
import { capturingLogger, sampleFields, silentLogger, sleep } from "./integration-fixtures.js";
import {
  assertPostgresReachable,
  columnCollation,
  dropSchema,
  SKIP_POSTGRES,
  tablesIn,
  TEST_DATABASE_URL,
  uniqueSchemaName,
} from "./postgres-test-database.js";
import { describeStoreContract } from "./store-contract.js";

/** PostgreSQL stores never touch the data directory. */
const UNUSED_DATA_DIR = "/nonexistent/smsgateway-unused";

/** The test URL with a password; with trust authentication the server never requests it. */
function urlWithPassword(): { url: string; password: string } {
  const url = new URL(TEST_DATABASE_URL);
  if (url.password === "") {
    url.password = "not-for-logs-7f3a";
  }
  return { url: url.toString(), password: decodeURIComponent(url.password) };
}

if (SKIP_POSTGRES) {
  console.warn("SKIP_POSTGRES=1: skipping the PostgreSQL store tests");
}

describe.skipIf(SKIP_POSTGRES)(`PostgreSQL store (TEST_DATABASE_URL or the local default)`, () => {
  beforeAll(assertPostgresReachable);

  describeStoreContract("PostgreSQL", async () => {
    const schema = uniqueSchemaName();
    return {
      open: async () =>
        (await openStore({ databaseUrl: TEST_DATABASE_URL, schema, dataDir: UNUSED_DATA_DIR, logger: silentLogger() }))
          .store,
      dispose: () => dropSchema(schema),
    };
  });

  describe("PostgreSQL store opening", () => {
    const schemas: string[] = [];

    function newSchema(): string {
      const schema = uniqueSchemaName();
      schemas.push(schema);
      return schema;
    }

    afterEach(async () => {
      for (const schema of schemas.splice(0)) {
        await dropSchema(schema);
      }
    });

    test("creates its tables in the schema", async () => {
      const schema = newSchema();

      const { store } = await openStore({ databaseUrl: TEST_DATABASE_URL, schema, dataDir: UNUSED_DATA_DIR, logger: silentLogger() });
      await store.create(sampleFields(), "in-schema");
      await store.close();

      expect(await tablesIn(schema)).toEqual([
        "encryption_key_checks",
        "idempotency_keys",
        "integrations",
        "kysely_migration",
        "kysely_migration_lock",
      ]);
      expect(await columnCollation(schema, "integrations", "id")).toBe("C");
    });

    test("updates a row whose creation time SQL wrote in another form", async () => {
      const schema = newSchema();
      const { store } = await openStore({ databaseUrl: TEST_DATABASE_URL, schema, dataDir: UNUSED_DATA_DIR, logger: silentLogger() });
      const client = new pg.Client({ connectionString: TEST_DATABASE_URL });
      await client.connect();
      try {
        await store.create(sampleFields(), "hand-written");
        await client.query(`update ${pg.escapeIdentifier(schema)}.integrations set create_time = '2024-05-01T10:00:00.123456+00:00' where id = 'hand-written'`);
        const read = await store.get("hand-written");

        const updated = await store.update("hand-written", sampleFields({ defaultSender: "Updated" }), read!);

        expect(updated.defaultSender).toBe("Updated");
        expect(updated.createTime.toISOString()).toBe("2024-05-01T10:00:00.123Z");
      } finally {
        await client.end();
        await store.close();
      }
    });

    test("keeps schemas apart", async () => {
      const options = { databaseUrl: TEST_DATABASE_URL, dataDir: UNUSED_DATA_DIR, logger: silentLogger() };
      const first = (await openStore({ ...options, schema: newSchema() })).store;
      const second = (await openStore({ ...options, schema: newSchema() })).store;

      await first.create(sampleFields(), "only-in-first");

      expect(await second.get("only-in-first")).toBeNull();
      expect(await first.get("only-in-first")).not.toBeNull();
      await first.close();
      await second.close();
    });

    test("description and logs leave the password out", async () => {
      const { url, password } = urlWithPassword();
      const schema = newSchema();
      const { logger, lines } = capturingLogger();

      const { store, description } = await openStore({ databaseUrl: url, schema, dataDir: UNUSED_DATA_DIR, logger });
      await store.close();

      const expected = new URL(url);
      expected.password = "";
      expected.search = "";
      expect(description).toBe(`${expected.toString()} (schema ${schema})`);
      expect(lines.length).toBeGreaterThan(0);
      expect(lines.join("\n")).not.toContain(password);
    });

    test("waits for the migration lock past the statement timeout", async () => {
      const schema = newSchema();
      const { logger, lines } = capturingLogger();
      const holder = new pg.Client({ connectionString: TEST_DATABASE_URL });
      await holder.connect();
      try {
        // The lock that Kysely's migrator takes, held as another replica would while it migrates.
        await holder.query("select pg_advisory_lock(3853314791062309107)");
        const opening = openStore({ databaseUrl: TEST_DATABASE_URL, schema, dataDir: UNUSED_DATA_DIR, logger });
        opening.catch(() => undefined);

        // Past the pool's 10-second statement timeout, which used to end the wait.
        await sleep(11_000);
        await holder.query("select pg_advisory_unlock(3853314791062309107)");
        const { store } = await opening;
        await store.close();

        const warnings = lines.map((line) => JSON.parse(line) as { msg: string; lock?: string }).filter((line) => line.msg.startsWith("waiting for the database migration lock"));
        expect(warnings).toHaveLength(1);
        expect(warnings[0]?.lock).toBe("pg_advisory_lock(3853314791062309107)");
      } finally {
        await holder.end();
      }
    }, 30_000);

    test("unreachable server fails without the password", async () => {
      const { logger, lines } = capturingLogger();

      const attempt = openStore({
        databaseUrl: "postgres://postgres:not-for-logs-7f3a@127.0.0.1:1/test",
        dataDir: UNUSED_DATA_DIR,
        logger,
      });

      await expect(attempt).rejects.toBeInstanceOf(StorageError);
      await expect(attempt).rejects.toMatchObject({ operation: "connect", code: "ECONNREFUSED" });
      await expect(attempt).rejects.toThrow("storage connect failed on postgres://postgres@127.0.0.1:1/test");
      await expect(attempt).rejects.not.toThrow("not-for-logs-7f3a");
      expect(lines.join("\n")).not.toContain("not-for-logs-7f3a");
    });

    test("rejects an invalid schema name", async () => {
      for (const schema of ["", "s".repeat(64)]) {
        const attempt = openStore({ databaseUrl: TEST_DATABASE_URL, schema, dataDir: UNUSED_DATA_DIR, logger: silentLogger() });

        await expect(attempt).rejects.toThrow("invalid PostgreSQL schema");
      }
    });
  });
});
