import { Code } from "@connectrpc/connect";
import { sql, type Kysely } from "kysely";
import pg from "pg";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";

import { toConnectError } from "../../src/rpc/error-mapping.js";
import type { StoreDatabase } from "../../src/store/database-schema.js";
import { openStore, type OpenedStore } from "../../src/store/open-store.js";
import { createPostgresDatabase, type PostgresTimeouts } from "../../src/store/postgres-database.js";
import { StorageError } from "../../src/store/storage-error.js";
import { waitFor } from "../flow/flow-fixtures.js";
import { FreezableTcpProxy } from "./freezable-tcp-proxy.js";
import { sampleFields, silentLogger } from "./integration-fixtures.js";
import {
  assertPostgresReachable,
  dropSchema,
  proxiedTestDatabase,
  SKIP_POSTGRES,
  TEST_DATABASE_URL,
  uniqueSchemaName,
} from "./postgres-test-database.js";

/** Short timeouts, so that a silent server fails a query well within a test's time. */
const TIMEOUTS: PostgresTimeouts = { connectTimeoutMs: 1_000, statementTimeoutMs: 200, queryTimeoutMs: 600 };

/** The advisory lock that Kysely 0.28 takes while it migrates on PostgreSQL. */
const KYSELY_MIGRATION_LOCK_ID = "3853314791062309107";

/** Returns the rejection of `promise` and how long it took to settle, in milliseconds. */
async function timedRejection(promise: Promise<unknown>): Promise<{ error: unknown; elapsedMs: number }> {
  const started = performance.now();
  const error = await promise.then(
    () => new Error("expected the call to fail, but it succeeded"),
    (reason: unknown) => reason,
  );
  return { error, elapsedMs: performance.now() - started };
}

describe.skipIf(SKIP_POSTGRES)("PostgreSQL store behind a network that goes silent", () => {
  const schema = uniqueSchemaName();
  let proxy: FreezableTcpProxy;
  let opened: OpenedStore;

  beforeAll(async () => {
    await assertPostgresReachable();
    let databaseUrl: string;
    ({ proxy, databaseUrl } = await proxiedTestDatabase());
    opened = await openStore({ databaseUrl, schema, dataDir: "/nonexistent/smsgateway-unused", postgresTimeouts: TIMEOUTS, logger: silentLogger() });
    await opened.store.create(sampleFields(), "silent");
  });

  afterEach(() => {
    proxy.release();
  });

  afterAll(async () => {
    await opened.store.close();
    await proxy.close();
    await dropSchema(schema);
  });

  const calls: Array<{ name: string; call: () => Promise<unknown> }> = [
    { name: "get", call: () => opened.store.get("silent") },
    { name: "list", call: () => opened.store.list({ limit: 10 }) },
    { name: "create", call: () => opened.store.create(sampleFields(), `created-${Date.now()}`) },
    {
      name: "claim idempotency key",
      call: () => {
        const now = new Date();
        const later = new Date(now.getTime() + 60_000);
        return opened.idempotency.claim({
          integrationId: "silent",
          key: `key-${Date.now()}`,
          requestHash: "hash",
          owner: "owner",
          leaseExpireTime: later,
          expireTime: later,
          now,
        });
      },
    },
  ];

  test.each(calls)("$name fails at query timeout", async ({ call }) => {
    await call();
    const accepted = proxy.acceptedConnections;

    proxy.freeze();
    const { error, elapsedMs } = await timedRejection(call());

    expect(error).toBeInstanceOf(StorageError);
    const storageError = error as StorageError;
    expect(storageError.code).toBe("ETIMEDOUT");
    expect(storageError.driverMessage).toContain(`PostgreSQL at postgres://postgres@127.0.0.1:${proxy.port}/`);
    expect(storageError.driverMessage).toContain(`(schema ${schema}) did not reply within 600 ms`);
    expect(storageError.driverMessage).toContain("Check that the server runs");
    expect(toConnectError(storageError).code).toBe(Code.Unavailable);
    expect(elapsedMs).toBeGreaterThanOrEqual(590);
    // The bound is 600 ms; the margin is for a slow machine, far below the minutes TCP would take.
    expect(elapsedMs).toBeLessThan(3_000);

    proxy.release();

    await call();
    // The connection of the lost reply was closed, not reused: the call after it opened a new one.
    expect(proxy.acceptedConnections).toBe(accepted + 1);
    await waitFor(() => proxy.openConnections === 1, "the closed connection to leave the proxy");
  });

  test("new connection fails at connect timeout", async () => {
    proxy.freeze();
    // The pool has at most one idle connection, so at least two of three calls at once open new ones.
    const results = await Promise.allSettled([opened.store.get("silent"), opened.store.get("silent"), opened.store.get("silent")]);

    for (const result of results) {
      expect(result.status).toBe("rejected");
      const error = (result as PromiseRejectedResult).reason as unknown;
      expect(error).toBeInstanceOf(StorageError);
      expect(toConnectError(error).code).toBe(Code.Unavailable);
    }
    proxy.release();
    expect(await opened.store.get("silent")).toMatchObject({ id: "silent" });
  });
});

describe.skipIf(SKIP_POSTGRES)("PostgreSQL statement and query timeouts", () => {
  const databases: Array<Kysely<StoreDatabase>> = [];
  const proxies: FreezableTcpProxy[] = [];

  afterEach(async () => {
    for (const db of databases.splice(0)) {
      await db.destroy();
    }
    for (const proxy of proxies.splice(0)) {
      await proxy.close();
    }
  });

  async function database(url: string, timeouts: Partial<PostgresTimeouts>): Promise<Kysely<StoreDatabase>> {
    const db = await createPostgresDatabase(url, "test database", silentLogger(), timeouts);
    databases.push(db);
    return db;
  }

  test("slow statement gets the server's error", async () => {
    const db = await database(TEST_DATABASE_URL, TIMEOUTS);

    const { error } = await timedRejection(sql`select pg_sleep(2)`.execute(db));

    expect(error).toMatchObject({ code: "57014" });
    const { rows } = await sql<{ one: number }>`select 1 as one`.execute(db);
    expect(rows).toEqual([{ one: 1 }]);
  });

  test.each([
    { name: "longer statement_timeout", statementTimeout: "2000" },
    { name: "statement_timeout 0", statementTimeout: "0" },
  ])("URL with $name lets a slow statement finish", async ({ statementTimeout }) => {
    // pg sends the URL's statement_timeout in place of the configured one, so the server lets the statement run.
    const url = new URL(TEST_DATABASE_URL);
    url.searchParams.set("statement_timeout", statementTimeout);
    const db = await database(url.toString(), TIMEOUTS);

    const { rows } = await sql<{ slept: boolean }>`select pg_sleep(1) is not null as slept`.execute(db);

    expect(rows).toEqual([{ slept: true }]);
  });

  test("URL statement_timeout keeps the query timeout's margin", async () => {
    const { proxy, databaseUrl } = await proxiedTestDatabase();
    proxies.push(proxy);
    const url = new URL(databaseUrl);
    url.searchParams.set("statement_timeout", "1000");
    const db = await database(url.toString(), TIMEOUTS);
    await sql`select 1`.execute(db);

    proxy.freeze();
    const { error } = await timedRejection(sql`select 1`.execute(db));

    // The URL's 1000 ms plus the 400 ms between the configured statement and query timeouts.
    expect(error).toMatchObject({ code: "ETIMEDOUT" });
    expect((error as Error).message).toContain("did not reply within 1400 ms");
  });

  test("query timeout below statement timeout rejected", async () => {
    await expect(createPostgresDatabase(TEST_DATABASE_URL, "test database", silentLogger(), { statementTimeoutMs: 1_000, queryTimeoutMs: 1_000 })).rejects.toThrow(
      "the query timeout (1000 ms) must be longer than the statement timeout (1000 ms)",
    );
  });

  test("connection reset fails only its query", async () => {
    const { proxy, databaseUrl } = await proxiedTestDatabase();
    proxies.push(proxy);
    const db = await database(databaseUrl, { statementTimeoutMs: 5_000, queryTimeoutMs: 6_000 });
    await sql`select 1`.execute(db);

    // pg emits the reset as an `error` event of the checked-out client, which ends the process when nothing listens.
    const uncaught: unknown[] = [];
    const recordUncaught = (error: unknown) => void uncaught.push(error);
    process.on("uncaughtException", recordUncaught);
    try {
      const query = timedRejection(sql`select pg_sleep(2)`.execute(db));
      await new Promise((resolve) => setTimeout(resolve, 100));
      proxy.cut();
      const { error } = await query;
      proxy.thaw();

      expect(error).toMatchObject({ code: "ECONNRESET" });
    } finally {
      process.off("uncaughtException", recordUncaught);
    }
    expect(uncaught).toEqual([]);
    const { rows } = await sql<{ one: number }>`select 1 as one`.execute(db);
    expect(rows).toEqual([{ one: 1 }]);
  });

  test("migrations wait past the query timeout", async () => {
    const schema = uniqueSchemaName();
    const holder = new pg.Client({ connectionString: TEST_DATABASE_URL });
    await holder.connect();
    try {
      await holder.query(`select pg_advisory_lock(${KYSELY_MIGRATION_LOCK_ID})`);
      setTimeout(() => void holder.query(`select pg_advisory_unlock(${KYSELY_MIGRATION_LOCK_ID})`), 1_500);

      const opened = await openStore({ databaseUrl: TEST_DATABASE_URL, schema, dataDir: "/nonexistent/smsgateway-unused", postgresTimeouts: TIMEOUTS, logger: silentLogger() });
      const created = await opened.store.create(sampleFields(), "after-lock");
      await opened.store.close();

      expect(created.id).toBe("after-lock");
    } finally {
      await holder.end();
      await dropSchema(schema);
    }
  });
});
