import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";

import Database from "better-sqlite3";
import { CompiledQuery, Kysely, sql, type SqliteDatabase } from "kysely";
import { afterEach, beforeEach, describe, expect, test } from "vitest";

import { GroupCommitSqliteDialect } from "../../src/store/sqlite-group-commit.js";
import { withStatementCache } from "../../src/store/sqlite-statement-cache.js";

interface TestDatabase {
  people: { id: string; name: string };
}

let directory: string;
let file: string;
let executed: string[];
let db: Kysely<TestDatabase>;

/** Opens the test file through the group-commit dialect and records the SQL of every statement it prepares. */
function open(): Kysely<TestDatabase> {
  // A short busy timeout keeps the test of a locked file quick.
  const database = new Database(file, { timeout: 50 });
  database.pragma("journal_mode = WAL");
  const cache = withStatementCache(database);
  const recording: SqliteDatabase = {
    close: () => cache.close(),
    prepare: (text) => {
      executed.push(text);
      return cache.prepare(text);
    },
  };
  return new Kysely<TestDatabase>({ dialect: new GroupCommitSqliteDialect(database, recording) });
}

/** Reads the table through a second connection, which reads only committed rows. */
function committedIds(): string[] {
  const reader = new Database(file, { readonly: true });
  try {
    return reader.prepare("select id from people order by id").pluck().all() as string[];
  } finally {
    reader.close();
  }
}

const insert = (id: string, name = id) => db.insertInto("people").values({ id, name }).execute();

beforeEach(async () => {
  directory = await mkdtemp(path.join(tmpdir(), "smsgateway-group-commit-"));
  file = path.join(directory, "test.db");
  executed = [];
  db = open();
  await db.schema.createTable("people").addColumn("id", "text", (column) => column.primaryKey()).addColumn("name", "text").execute();
  // A name of "rollback" makes SQLite roll back the whole transaction, as a full disk or an I/O error would.
  await sql`create trigger refuse_rollback before insert on people when new.name = 'rollback' begin select raise(rollback, 'rolled back'); end`.execute(db);
  executed = [];
});

afterEach(async () => {
  await db.destroy();
  await rm(directory, { recursive: true, force: true });
});

describe("SQLite group commit", () => {
  test("commits one turn's statements together", async () => {
    await Promise.all([insert("a"), insert("b"), insert("c")]);

    expect(executed).toEqual([
      "begin immediate",
      'insert into "people" ("id", "name") values (?, ?)',
      'insert into "people" ("id", "name") values (?, ?)',
      'insert into "people" ("id", "name") values (?, ?)',
      "commit",
    ]);
    expect(committedIds()).toEqual(["a", "b", "c"]);
  });

  test("runs a lone statement without a transaction", async () => {
    await insert("a");

    expect(executed).toEqual(['insert into "people" ("id", "name") values (?, ?)']);
    expect(committedIds()).toEqual(["a"]);
  });

  test("fails only the statement that broke a constraint", async () => {
    await insert("a");

    const results = await Promise.allSettled([insert("b"), insert("a"), insert("c")]);

    expect(results.map((result) => result.status)).toEqual(["fulfilled", "rejected", "fulfilled"]);
    expect(String((results[1] as PromiseRejectedResult).reason)).toMatch(/UNIQUE constraint failed: people.id/);
    expect(committedIds()).toEqual(["a", "b", "c"]);
  });

  test("runs each statement alone after a rollback", async () => {
    const results = await Promise.allSettled([insert("a"), insert("b", "rollback"), insert("c")]);

    expect(results.map((result) => result.status)).toEqual(["fulfilled", "rejected", "fulfilled"]);
    expect(String((results[1] as PromiseRejectedResult).reason)).toMatch(/rolled back/);
    expect(committedIds()).toEqual(["a", "c"]);
  });

  test("fails a group at once when locked", async () => {
    const other = new Database(file);
    other.exec("begin exclusive");
    try {
      const results = await Promise.allSettled([insert("a"), insert("b"), insert("c")]);

      expect(results.map((result) => result.status)).toEqual(["rejected", "rejected", "rejected"]);
      expect(String((results[0] as PromiseRejectedResult).reason)).toMatch(/database is locked/);
      // One wait for the lock, not one per statement.
      expect(executed).toEqual(["begin immediate"]);
    } finally {
      other.exec("rollback");
      other.close();
    }
    expect(committedIds()).toEqual([]);
  });

  test("returns reads and affected rows", async () => {
    await insert("a", "Ada");

    const [rows, update] = await Promise.all([
      db.selectFrom("people").select("name").where("id", "=", "a").execute(),
      db.updateTable("people").set({ name: "Bob" }).where("id", "=", "b").executeTakeFirst(),
    ]);

    expect(rows).toEqual([{ name: "Ada" }]);
    expect(update.numUpdatedRows).toBe(0n);
  });

  test("keeps other callers out of a transaction", async () => {
    let outside: Promise<unknown> | undefined;
    let outsideDone = false;

    await db
      .transaction()
      .execute(async (transaction) => {
        await transaction.insertInto("people").values({ id: "inside", name: "inside" }).execute();
        outside = insert("outside").then(() => (outsideDone = true));
        // Several turns pass while the transaction is open.
        await new Promise((resolve) => setTimeout(resolve, 20));
        expect(outsideDone).toBe(false);
        throw new Error("roll the transaction back");
      })
      .catch(() => {});
    await outside;

    expect(outsideDone).toBe(true);
    expect(committedIds()).toEqual(["outside"]);
  });

  test("commits a transaction's statements", async () => {
    await db.transaction().execute(async (transaction) => {
      await transaction.insertInto("people").values({ id: "a", name: "a" }).execute();
      await transaction.insertInto("people").values({ id: "b", name: "b" }).execute();
    });

    expect(committedIds()).toEqual(["a", "b"]);
  });

  test("commits queued statements when closed", async () => {
    await db.destroy();
    const database = new Database(file);
    const driver = new GroupCommitSqliteDialect(database, withStatementCache(database)).createDriver();
    const connection = await driver.acquireConnection();

    const pending = connection.executeQuery(CompiledQuery.raw("insert into people (id, name) values (?, ?)", ["a", "a"]));
    await driver.destroy();

    expect(await pending).toMatchObject({ numAffectedRows: 1n });
    expect(committedIds()).toEqual(["a"]);
    db = open();
  });
});
