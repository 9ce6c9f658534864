import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";

import { sql, type Kysely } from "kysely";
import { afterEach, beforeAll, beforeEach, describe, expect, test } from "vitest";

import { createPostgresDatabase } from "../../src/store/postgres-database.js";
import { QueryTemplate } from "../../src/store/query-template.js";
import { openSqliteDatabase } from "../../src/store/sqlite-database.js";
import { silentLogger } from "./integration-fixtures.js";
import { assertPostgresReachable, dropSchema, SKIP_POSTGRES, TEST_DATABASE_URL, uniqueSchemaName } from "./postgres-test-database.js";

/** The table the tests query. */
interface TestDatabase {
  people: { id: string; name: string; nick: string; age: number };
}

/** A database with an empty `people` table, and how to remove it. */
interface Location {
  db: Kysely<TestDatabase>;
  dispose(): Promise<void>;
}

const engines: Array<[string, () => Promise<Location>]> = [
  [
    "SQLite",
    async () => {
      const dataDir = await mkdtemp(path.join(tmpdir(), "smsgateway-template-"));
      const { db } = await openSqliteDatabase(dataDir, silentLogger());
      return {
        db: db as unknown as Kysely<TestDatabase>,
        dispose: async () => {
          await db.destroy();
          await rm(dataDir, { recursive: true, force: true });
        },
      };
    },
  ],
];
if (!SKIP_POSTGRES) {
  engines.push([
    "PostgreSQL",
    async () => {
      const schema = uniqueSchemaName();
      const db = await createPostgresDatabase(TEST_DATABASE_URL, "test database", silentLogger());
      await sql`create schema ${sql.id(schema)}`.execute(db);
      return {
        // A schema other than public also proves that the template keeps the schema of the instance that built it.
        db: (db as unknown as Kysely<TestDatabase>).withSchema(schema),
        dispose: async () => {
          await db.destroy();
          await dropSchema(schema);
        },
      };
    },
  ]);
}

describe.each(engines)("query template on %s", (engine, makeLocation) => {
  let location: Location;

  beforeAll(async () => {
    if (engine === "PostgreSQL") {
      await assertPostgresReachable();
    }
  });

  beforeEach(async () => {
    location = await makeLocation();
    const { db } = location;
    await db.schema
      .createTable("people")
      .addColumn("id", "text", (column) => column.primaryKey())
      .addColumn("name", "text", (column) => column.notNull())
      .addColumn("nick", "text", (column) => column.notNull())
      .addColumn("age", "integer", (column) => column.notNull())
      .execute();
    await db
      .insertInto("people")
      .values([
        { id: "ada", name: "Ada", nick: "a", age: 36 },
        { id: "bob", name: "Bob", nick: "b", age: 7 },
      ])
      .execute();
  });

  afterEach(async () => {
    await location.dispose();
  });

  test("runs with new values, keeps literals", async () => {
    const { db } = location;
    const template = new QueryTemplate<"id", { name: string }>(db, (param) =>
      db.selectFrom("people").select("name").where("id", "=", param("id")).where("age", ">=", 18),
    );

    expect((await template.execute({ id: "ada" })).rows).toEqual([{ name: "Ada" }]);
    // Bob is stored, so only the literal 18 of the query can leave him out.
    expect((await template.execute({ id: "bob" })).rows).toEqual([]);
    expect((await template.execute({ id: "nobody" })).rows).toEqual([]);
  });

  test("fills every place of one parameter", async () => {
    const { db } = location;
    const template = new QueryTemplate(db, (param) =>
      db.updateTable("people").set({ name: param("name"), nick: param("name") }).where("id", "=", param("id")),
    );

    const result = await template.execute({ id: "bob", name: "Robert" });

    expect(result.numAffectedRows).toBe(1n);
    const rows = await db.selectFrom("people").selectAll().orderBy("id").execute();
    expect(rows).toEqual([
      { id: "ada", name: "Ada", nick: "a", age: 36 },
      { id: "bob", name: "Robert", nick: "Robert", age: 7 },
    ]);
  });

  test("rejects a parameter missing from the SQL", () => {
    const { db } = location;

    expect(
      () =>
        new QueryTemplate(db, (param) => {
          param("unused");
          return db.selectFrom("people").select("id").where("id", "=", param("id"));
        }),
    ).toThrow(/does not pass parameter unused/);
  });
});
