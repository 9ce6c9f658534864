import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";

import { afterEach, beforeAll, beforeEach, describe, expect, test } from "vitest";

import type { IdempotencyClaim } from "../../src/store/idempotency-store.js";
import { openStore, type OpenedStore } from "../../src/store/open-store.js";
import { sampleFields, silentLogger } from "../store/integration-fixtures.js";
import {
  assertPostgresReachable,
  dropSchema,
  SKIP_POSTGRES,
  TEST_DATABASE_URL,
  uniqueSchemaName,
} from "../store/postgres-test-database.js";

/** Storage that several store instances can open, removed after each test. */
interface Location {
  open(): Promise<OpenedStore>;
  dispose(): Promise<void>;
}

const NOW = new Date("2026-03-01T12:00:00.000Z");
const LATER = new Date(NOW.getTime() + 60_000);
const TOMORROW = new Date(NOW.getTime() + 86_400_000);

function claimOf(owner: string, overrides: Partial<IdempotencyClaim> = {}): IdempotencyClaim {
  return {
    integrationId: "acme",
    key: "k1",
    requestHash: "hash-a",
    owner,
    leaseExpireTime: LATER,
    expireTime: TOMORROW,
    now: NOW,
    ...overrides,
  };
}

const engines: Array<[string, () => Promise<Location>]> = [
  [
    "SQLite",
    async () => {
      const dataDir = await mkdtemp(path.join(tmpdir(), "smsgateway-idem-"));
      return {
        open: () => openStore({ dataDir, logger: silentLogger() }),
        dispose: () => rm(dataDir, { recursive: true, force: true }),
      };
    },
  ],
];
if (!SKIP_POSTGRES) {
  engines.push([
    "PostgreSQL",
    async () => {
      const schema = uniqueSchemaName();
      return {
        open: () => openStore({ databaseUrl: TEST_DATABASE_URL, schema, dataDir: "/nonexistent", logger: silentLogger() }),
        dispose: () => dropSchema(schema),
      };
    },
  ]);
}

describe.each(engines)("%s idempotency store", (engine, makeLocation) => {
  let location: Location;
  let opened: OpenedStore[];
  let first: OpenedStore;

  beforeAll(async () => {
    if (engine === "PostgreSQL") {
      await assertPostgresReachable();
    }
  });

  beforeEach(async () => {
    location = await makeLocation();
    opened = [];
    first = await open();
    await first.store.create(sampleFields(), "acme");
  });

  afterEach(async () => {
    for (const instance of opened) {
      await instance.store.close();
    }
    await location.dispose();
  });

  async function open(): Promise<OpenedStore> {
    const instance = await location.open();
    opened.push(instance);
    return instance;
  }

  test("claims a new key once", async () => {
    expect(await first.idempotency.claim(claimOf("a"))).toBe(true);
    expect(await first.idempotency.claim(claimOf("b"))).toBe(false);

    const record = await first.idempotency.get("acme", "k1");
    expect(record).toEqual({
      integrationId: "acme",
      key: "k1",
      requestHash: "hash-a",
      state: "pending",
      owner: "a",
      leaseExpireTime: LATER,
      expireTime: TOMORROW,
      outcome: null,
    });
  });

  test("claim for a deleted integration", async () => {
    await first.store.delete("acme");

    await expect(first.idempotency.claim(claimOf("a"))).rejects.toMatchObject({ name: "NotFoundError", resource: "integration", id: "acme" });
  });

  test("stores the owner's outcome and keeps a done key", async () => {
    await first.idempotency.claim(claimOf("a"));

    expect(await first.idempotency.finish("acme", "k1", "b", { state: "done", outcome: "{}", expireTime: TOMORROW, now: NOW })).toBe(false);
    expect(await first.idempotency.finish("acme", "k1", "a", { state: "done", outcome: '{"v":1}', expireTime: TOMORROW, now: NOW })).toBe(true);

    expect(await first.idempotency.get("acme", "k1")).toMatchObject({ state: "done", outcome: '{"v":1}' });
    expect(await first.idempotency.claim(claimOf("c"))).toBe(false);
  });

  test("lets the same request take over a retryable key", async () => {
    await first.idempotency.claim(claimOf("a"));
    await first.idempotency.finish("acme", "k1", "a", { state: "retryable", outcome: "{}", expireTime: TOMORROW, now: NOW });

    expect(await first.idempotency.claim(claimOf("other-request", { requestHash: "hash-b" }))).toBe(false);
    expect(await first.idempotency.claim(claimOf("b"))).toBe(true);

    expect(await first.idempotency.get("acme", "k1")).toMatchObject({ state: "pending", owner: "b", outcome: null });
  });

  test("lets any request take over an expired key", async () => {
    await first.idempotency.claim(claimOf("a", { expireTime: LATER }));

    const afterExpiry = new Date(LATER.getTime() + 1);
    expect(await first.idempotency.claim(claimOf("b", { requestHash: "hash-b", now: afterExpiry }))).toBe(true);

    expect(await first.idempotency.get("acme", "k1")).toMatchObject({ owner: "b", requestHash: "hash-b" });
  });

  test("abandons a pending key only after its lease", async () => {
    await first.idempotency.claim(claimOf("a"));

    expect(await first.idempotency.abandon("acme", "k1", "a", "{}", NOW)).toBe(false);
    expect(await first.idempotency.abandon("acme", "k1", "someone-else", "{}", LATER)).toBe(false);
    expect(await first.idempotency.abandon("acme", "k1", "a", '{"kind":"unknown"}', LATER)).toBe(true);

    expect(await first.idempotency.get("acme", "k1")).toMatchObject({ state: "retryable", outcome: '{"kind":"unknown"}' });
  });

  test("purges expired keys only", async () => {
    await first.idempotency.claim(claimOf("a", { key: "old", expireTime: LATER }));
    await first.idempotency.claim(claimOf("a", { key: "new", expireTime: TOMORROW }));

    expect(await first.idempotency.purgeExpired(new Date(LATER.getTime() + 1))).toBe(1);

    expect(await first.idempotency.get("acme", "old")).toBeNull();
    expect(await first.idempotency.get("acme", "new")).not.toBeNull();
  });

  test("grants one of many concurrent claims across store instances", async () => {
    const second = await open();

    const claims = await Promise.all(
      Array.from({ length: 20 }, (_unused, index) =>
        (index % 2 === 0 ? first : second).idempotency.claim(claimOf(`owner-${index}`)),
      ),
    );

    expect(claims.filter(Boolean)).toHaveLength(1);
    const winner = `owner-${claims.indexOf(true)}`;
    expect((await second.idempotency.get("acme", "k1"))?.owner).toBe(winner);
  });

  test("grants one concurrent takeover of a retryable key", async () => {
    const second = await open();
    await first.idempotency.claim(claimOf("a"));
    await first.idempotency.finish("acme", "k1", "a", { state: "retryable", outcome: "{}", expireTime: TOMORROW, now: NOW });

    const claims = await Promise.all(
      Array.from({ length: 20 }, (_unused, index) =>
        (index % 2 === 0 ? first : second).idempotency.claim(claimOf(`owner-${index}`)),
      ),
    );

    expect(claims.filter(Boolean)).toHaveLength(1);
  });

  test("deletes the keys of a deleted integration", async () => {
    await first.idempotency.claim(claimOf("a"));

    await first.store.delete("acme");

    expect(await first.idempotency.get("acme", "k1")).toBeNull();
  });

  test("stores token_lifetime_seconds with the integration", async () => {
    const created = await first.store.create(sampleFields({ tokenLifetimeSeconds: 300 }), "with-lifetime");
    const updated = await first.store.update("with-lifetime", sampleFields({ tokenLifetimeSeconds: null }));

    expect(created.tokenLifetimeSeconds).toBe(300);
    expect(updated.tokenLifetimeSeconds).toBeNull();
    expect((await first.store.get("acme"))?.tokenLifetimeSeconds).toBeNull();
  });
});
