import pg from "pg";
import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { openStore } from "../../src/store/open-store.js";
import { silentLogger } from "./integration-fixtures.js";
import { assertPostgresReachable, dropSchema, SKIP_POSTGRES, TEST_DATABASE_URL, uniqueSchemaName } from "./postgres-test-database.js";

/** Stores opened at once; another session meanwhile creates and drops four times as many schemas. */
const ROUNDS = 12;

describe.skipIf(SKIP_POSTGRES)("PostgreSQL store opening while schemas are dropped", () => {
  const opened: string[] = [];

  beforeAll(assertPostgresReachable);

  afterAll(async () => {
    for (const schema of opened) {
      await dropSchema(schema);
    }
  });

  test("migrates despite concurrent DROP SCHEMA", async () => {
    const client = new pg.Client({ connectionString: TEST_DATABASE_URL });
    await client.connect();
    const churn = (async () => {
      try {
        for (let i = 0; i < ROUNDS * 4; i++) {
          const schema = pg.escapeIdentifier(uniqueSchemaName());
          await client.query(`create schema ${schema}`);
          await client.query(`create table ${schema}.t (id serial primary key)`);
          await client.query(`drop schema ${schema} cascade`);
        }
      } finally {
        await client.end();
      }
    })();

    const opens = Array.from({ length: ROUNDS }, async () => {
      const schema = uniqueSchemaName();
      opened.push(schema);
      const { store } = await openStore({ databaseUrl: TEST_DATABASE_URL, schema, dataDir: "/nonexistent/unused", logger: silentLogger() });
      await store.close();
    });

    const results = await Promise.allSettled([...opens, churn]);
    expect(results.filter((result) => result.status === "rejected")).toEqual([]);
  });
});
