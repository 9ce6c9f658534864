import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterEach, describe, expect, test } from "vitest";
import { dropSchema, SKIP_POSTGRES, TEST_DATABASE_URL, uniqueSchemaName } from "./postgres-test-database.js";

const execFileAsync = promisify(execFile);

const directories: string[] = [];
const schemas: string[] = [];

afterEach(async () => {
  for (const directory of directories.splice(0)) {
    rmSync(directory, { recursive: true, force: true });
  }
  for (const schema of schemas.splice(0)) {
    await dropSchema(schema);
  }
});

/**
 * Opens and closes a store in a fresh Node process and returns how many
 * files of the pg package that process loaded. It runs in a child process
 * because the test runner's module cache contains what other test files loaded.
 */
async function pgFilesLoaded(databaseUrl: string, schema?: string): Promise<number> {
  const dataDir = mkdtempSync(path.join(tmpdir(), "smsgateway-pg-loading-"));
  directories.push(dataDir);
  const script = `
    import { createRequire } from "node:module";
    import pino from "pino";
    import { openStore } from "./src/store/open-store.ts";
    const opened = await openStore({
      databaseUrl: process.env.STORE_URL,
      schema: process.env.STORE_SCHEMA || undefined,
      dataDir: process.env.STORE_DIR,
      logger: pino({ level: "silent" }),
    });
    await opened.store.close();
    const loaded = Object.keys(createRequire(import.meta.url).cache).filter((file) => file.includes("/node_modules/pg/"));
    console.log(loaded.length);
  `;
  const { stdout } = await execFileAsync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
    env: { ...process.env, STORE_URL: databaseUrl, STORE_SCHEMA: schema ?? "", STORE_DIR: dataDir },
    timeout: 30_000,
  });
  return Number(stdout.trim().split("\n").at(-1));
}

describe("the PostgreSQL driver", () => {
  test("is not loaded by a service on the SQLite store", async () => {
    expect(await pgFilesLoaded("")).toBe(0);
  }, 40_000);

  // Shows that the count above can see the driver.
  test.skipIf(SKIP_POSTGRES)("is loaded by a service on PostgreSQL", async () => {
    const schema = uniqueSchemaName();
    schemas.push(schema);

    expect(await pgFilesLoaded(TEST_DATABASE_URL, schema)).toBeGreaterThan(0);
  }, 40_000);
});
