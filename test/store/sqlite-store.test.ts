import { mkdtemp, rm, stat, writeFile, chmod } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";

import Database from "better-sqlite3";
import { sql } from "kysely";
import { afterEach, describe, expect, test } from "vitest";

import { createMigrationProvider } from "../../src/store/migrations.js";
import { openStore } from "../../src/store/open-store.js";
import { openSqliteDatabase } from "../../src/store/sqlite-database.js";
import { StorageError } from "../../src/store/storage-error.js";
import { capturingLogger, silentLogger } from "./integration-fixtures.js";
import { describeStoreContract } from "./store-contract.js";

async function makeTempDir(): Promise<string> {
  return mkdtemp(path.join(tmpdir(), "smsgateway-store-"));
}

describeStoreContract("SQLite", async () => {
  const dataDir = await makeTempDir();
  return {
    open: async () => (await openStore({ dataDir, logger: silentLogger() })).store,
    dispose: () => rm(dataDir, { recursive: true, force: true }),
  };
});

describe("SQLite store opening", () => {
  const tempDirs: string[] = [];

  async function tempDir(): Promise<string> {
    const dir = await makeTempDir();
    tempDirs.push(dir);
    return dir;
  }

  afterEach(async () => {
    for (const dir of tempDirs.splice(0)) {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("creates the data directory with mode 0700", async () => {
    const dataDir = path.join(await tempDir(), "nested", "data");

    const { store, description } = await openStore({ dataDir, logger: silentLogger() });
    await store.close();

    expect((await stat(dataDir)).mode & 0o777).toBe(0o700);
    expect(description).toBe(`sqlite:${path.join(dataDir, "smsgateway.db")}`);
  });

  test("leaves the file in WAL journal mode", async () => {
    const dataDir = await tempDir();

    const { store } = await openStore({ dataDir, logger: silentLogger() });
    await store.close();

    const database = new Database(path.join(dataDir, "smsgateway.db"), { readonly: true });
    try {
      expect(database.pragma("journal_mode", { simple: true })).toBe("wal");
    } finally {
      database.close();
    }
  });

  // SQLite reports NORMAL as 1 and FULL as 2.
  test.each([
    { mode: undefined, expected: 1 },
    { mode: "normal", expected: 1 },
    { mode: "full", expected: 2 },
  ] as const)("synchronous mode $mode", async ({ mode, expected }) => {
    const { db } = await openSqliteDatabase(await tempDir(), silentLogger(), mode);
    try {
      const { rows } = await sql<{ synchronous: number }>`PRAGMA synchronous`.execute(db);

      expect(rows[0]?.synchronous).toBe(expected);
    } finally {
      await db.destroy();
    }
  });

  test("creates a STRICT table", async () => {
    const dataDir = await tempDir();

    const { store } = await openStore({ dataDir, logger: silentLogger() });
    await store.close();

    const database = new Database(path.join(dataDir, "smsgateway.db"), { readonly: true });
    try {
      const table = database.prepare("select strict from pragma_table_list where name = 'integrations'").get();
      expect(table).toEqual({ strict: 1 });
    } finally {
      database.close();
    }
  });

  test("warns when the data directory is shared", async () => {
    const dataDir = await tempDir();
    await chmod(dataDir, 0o755);
    const { logger, lines } = capturingLogger();

    const { store } = await openStore({ dataDir, logger });
    await store.close();

    const warnings = lines.map((line) => JSON.parse(line) as { level: number; msg: string; mode?: string });
    expect(warnings).toContainEqual(
      expect.objectContaining({ level: 40, mode: "0755", msg: expect.stringContaining("accessible to other users") }),
    );
  });

  test("creates the database file with mode 0600", async () => {
    const dataDir = await tempDir();
    await chmod(dataDir, 0o755);
    // The usual umask, under which SQLite alone would create the files with mode 0644.
    const umask = process.umask(0o022);
    try {
      const { db } = await openSqliteDatabase(dataDir, silentLogger());
      try {
        await sql`CREATE TABLE mode_check (id INTEGER)`.execute(db);
        const file = path.join(dataDir, "smsgateway.db");

        expect((await stat(file)).mode & 0o777).toBe(0o600);
        expect((await stat(`${file}-wal`)).mode & 0o777).toBe(0o600);
        expect((await stat(`${file}-shm`)).mode & 0o777).toBe(0o600);
      } finally {
        await db.destroy();
      }
    } finally {
      process.umask(umask);
    }
  });

  test("warns when the database file is shared", async () => {
    const dataDir = await tempDir();
    await (await openStore({ dataDir, logger: silentLogger() })).store.close();
    await chmod(path.join(dataDir, "smsgateway.db"), 0o644);
    const { logger, lines } = capturingLogger();

    await (await openStore({ dataDir, logger })).store.close();

    const warnings = lines.map((line) => JSON.parse(line) as { level: number; msg: string; mode?: string; file?: string });
    expect(warnings).toContainEqual(
      expect.objectContaining({ level: 40, mode: "0644", file: path.join(dataDir, "smsgateway.db"), msg: expect.stringContaining("consider chmod 600") }),
    );
    expect((await stat(path.join(dataDir, "smsgateway.db"))).mode & 0o777).toBe(0o644);
  });

  test("owner-only database file gets no warning", async () => {
    const dataDir = await tempDir();
    await (await openStore({ dataDir, logger: silentLogger() })).store.close();
    const { logger, lines } = capturingLogger();

    await (await openStore({ dataDir, logger })).store.close();

    const warnings = lines.map((line) => JSON.parse(line) as { level: number }).filter((line) => line.level >= 40);
    expect(warnings).toEqual([]);
  });

  test("logs each applied migration once", async () => {
    const dataDir = await tempDir();
    const { logger, lines } = capturingLogger();

    await (await openStore({ dataDir, logger })).store.close();
    await (await openStore({ dataDir, logger })).store.close();

    const applied = lines
      .map((line) => JSON.parse(line) as { msg: string; migration?: string })
      .filter((line) => line.msg === "applied database migration")
      .map((line) => line.migration);
    const defined = Object.keys(await createMigrationProvider("sqlite").getMigrations()).sort();
    expect(applied).toEqual(defined);
    expect(applied[0]).toBe("0001_create_integrations");
  });

  test("rejects a data directory that is a file", async () => {
    const dataDir = path.join(await tempDir(), "not-a-directory");
    await writeFile(dataDir, "");

    const attempt = openStore({ dataDir, logger: silentLogger() });

    await expect(attempt).rejects.toBeInstanceOf(StorageError);
    await expect(attempt).rejects.toThrow(`storage open failed on sqlite:${path.join(dataDir, "smsgateway.db")}`);
  });

  test("rejects the schema option", async () => {
    const attempt = openStore({ dataDir: await tempDir(), schema: "other", logger: silentLogger() });

    await expect(attempt).rejects.toThrow("the schema option applies only to PostgreSQL");
  });

  test("rejects an unsupported URL scheme without echoing it", async () => {
    const attempt = openStore({
      databaseUrl: "mysql://root:hunter2@127.0.0.1/db",
      dataDir: await tempDir(),
      logger: silentLogger(),
    });

    await expect(attempt).rejects.toThrow("unsupported database URL scheme mysql:");
    await expect(attempt).rejects.not.toThrow("hunter2");
  });
});
