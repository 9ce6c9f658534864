import Database from "better-sqlite3";
import { afterEach, describe, expect, test } from "vitest";
import { withStatementCache } from "../../src/store/sqlite-statement-cache.js";

const opened: Database.Database[] = [];

afterEach(() => {
  for (const database of opened.splice(0)) {
    database.close();
  }
});

function memoryDatabase(): Database.Database {
  const database = new Database(":memory:");
  opened.push(database);
  database.exec("CREATE TABLE t (n INTEGER); INSERT INTO t VALUES (1), (2), (3)");
  return database;
}

describe("SQLite statement cache", () => {
  test("reuses a prepared statement", () => {
    const cache = withStatementCache(memoryDatabase());

    const first = cache.prepare("SELECT n FROM t WHERE n = ?");
    const second = cache.prepare("SELECT n FROM t WHERE n = ?");

    expect(second).toBe(first);
    expect(second.all([2])).toEqual([{ n: 2 }]);
  });

  test("prepares anew while iterating", () => {
    const cache = withStatementCache(memoryDatabase());
    const sql = "SELECT n FROM t ORDER BY n";
    const outer = cache.prepare(sql);
    const seen: unknown[] = [];

    for (const row of outer.iterate([])) {
      const inner = cache.prepare(sql);
      expect(inner).not.toBe(outer);
      seen.push(row, inner.all([]).length);
    }

    expect(seen).toEqual([{ n: 1 }, 3, { n: 2 }, 3, { n: 3 }, 3]);
    expect(cache.prepare(sql)).toBe(outer);
  });

  test("drops the least recently used", () => {
    const cache = withStatementCache(memoryDatabase(), 2);
    const a = cache.prepare("SELECT 1");
    const b = cache.prepare("SELECT 2");
    cache.prepare("SELECT 1");

    cache.prepare("SELECT 3");

    expect(cache.prepare("SELECT 1")).toBe(a);
    expect(cache.prepare("SELECT 2")).not.toBe(b);
  });

  test("close closes the database", () => {
    const database = memoryDatabase();

    withStatementCache(database).close();

    expect(database.open).toBe(false);
  });
});
