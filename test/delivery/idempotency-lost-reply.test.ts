import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";

import { IdempotencyKeys, type IdempotencyScope } from "../../src/delivery/idempotency-keys.js";
import type { SendResult } from "../../src/dispatch/dispatcher.js";
import { SendDeadline } from "../../src/dispatch/send-deadline.js";
import type { IdempotencyStore } from "../../src/store/idempotency-store.js";
import { openStore, type OpenedStore } from "../../src/store/open-store.js";
import { StorageError } from "../../src/store/storage-error.js";
import { FreezableTcpProxy } from "../store/freezable-tcp-proxy.js";
import { sampleFields, silentLogger } from "../store/integration-fixtures.js";
import {
  assertPostgresReachable,
  dropSchema,
  proxiedTestDatabase,
  SKIP_POSTGRES,
  TEST_DATABASE_URL,
  uniqueSchemaName,
} from "../store/postgres-test-database.js";
import { idempotencyErrorOf } from "./fixtures.js";

const UNUSED_DATA_DIR = "/nonexistent/smsgateway-unused";

/** The result of every send in these tests. */
const SENT: SendResult = {
  id: "m-1",
  date: new Date("2026-01-02T03:04:05Z"),
  rawDate: "2026-01-02T03:04:05Z",
  dateSource: "gateway",
  httpStatus: 200,
  attempts: 1,
  warnings: [],
};

/**
 * Delegates to a store, and has the proxy hold the database's replies
 * before the first call of `method`, so that its statement commits and its
 * reply is lost.
 */
function losingReplyOf(store: IdempotencyStore, method: "claim" | "abandon", proxy: FreezableTcpProxy): IdempotencyStore {
  let replyHeld = false;
  const holdRepliesOnce = (called: "claim" | "abandon") => {
    if (called === method && !replyHeld) {
      replyHeld = true;
      proxy.holdReplies();
    }
  };
  return {
    claim: (claim) => {
      holdRepliesOnce("claim");
      return store.claim(claim);
    },
    get: (integrationId, key) => store.get(integrationId, key),
    finish: (integrationId, key, owner, outcome) => store.finish(integrationId, key, owner, outcome),
    abandon: (integrationId, key, owner, outcome, now) => {
      holdRepliesOnce("abandon");
      return store.abandon(integrationId, key, owner, outcome, now);
    },
    purgeExpired: (now) => store.purgeExpired(now),
  };
}

describe.skipIf(SKIP_POSTGRES)("idempotency keys when a PostgreSQL reply is lost", () => {
  const schema = uniqueSchemaName();
  let proxy: FreezableTcpProxy;
  /** The store through the proxy, with short timeouts. */
  let proxied: OpenedStore;
  /** The same schema without the proxy, to read what was committed. */
  let direct: OpenedStore;
  let sends = 0;
  const send = () => {
    sends += 1;
    return Promise.resolve(SENT);
  };

  beforeAll(async () => {
    await assertPostgresReachable();
    let databaseUrl: string;
    ({ proxy, databaseUrl } = await proxiedTestDatabase());
    proxied = await openStore({
      databaseUrl,
      schema,
      dataDir: UNUSED_DATA_DIR,
      postgresTimeouts: { connectTimeoutMs: 2_000, statementTimeoutMs: 200, queryTimeoutMs: 500 },
      logger: silentLogger(),
    });
    direct = await openStore({ databaseUrl: TEST_DATABASE_URL, schema, dataDir: UNUSED_DATA_DIR, logger: silentLogger() });
    await direct.store.create(sampleFields(), "acme");
  });

  afterEach(() => {
    proxy.release();
    sends = 0;
  });

  afterAll(async () => {
    await proxied.store.close();
    await direct.store.close();
    await proxy.close();
    await dropSchema(schema);
  });

  test("lost claim reply: nothing sent, retry sends once", async () => {
    const scope: IdempotencyScope = { integrationId: "acme", key: "lost-claim", requestHash: "hash-1" };
    const keys = new IdempotencyKeys({ store: losingReplyOf(proxied.idempotency, "claim", proxy), ttlSeconds: 3_600, logger: silentLogger() });

    const first = await keys.run(scope, new SendDeadline(5_000, undefined), send).then(
      () => new Error("expected the claim to fail"),
      (error: unknown) => error,
    );

    expect(first).toBeInstanceOf(StorageError);
    expect((first as StorageError).code).toBe("ETIMEDOUT");
    expect(sends).toBe(0);
    // The claim committed although its reply was lost.
    expect(await direct.idempotency.get("acme", "lost-claim")).toMatchObject({ state: "pending" });

    // The release of the claim waits on a new connection, which the proxy holds until now.
    proxy.release();
    await keys.close();

    expect(await direct.idempotency.get("acme", "lost-claim")).toMatchObject({ state: "retryable" });
    const retried = await keys.run(scope, new SendDeadline(1_000, undefined), send);
    expect(retried).toMatchObject({ id: "m-1", replayed: false });
    expect(sends).toBe(1);
  });

  test("lost abandon reply reports unknown outcome", async () => {
    const scope: IdempotencyScope = { integrationId: "acme", key: "lost-abandon", requestHash: "hash-2" };
    const past = new Date(Date.now() - 60_000);
    await direct.idempotency.claim({ ...scope, owner: "crashed-replica", leaseExpireTime: past, expireTime: new Date(Date.now() + 3_600_000), now: past });
    const keys = new IdempotencyKeys({ store: losingReplyOf(proxied.idempotency, "abandon", proxy), ttlSeconds: 3_600, logger: silentLogger() });

    const error = await idempotencyErrorOf(keys.run(scope, new SendDeadline(5_000, undefined), send), "outcome_unknown");

    expect(error.message).toContain("recorded no outcome");
    expect(sends).toBe(0);
    // The abandon committed, so the next request sends again, as the message states.
    expect(await direct.idempotency.get("acme", "lost-abandon")).toMatchObject({ state: "retryable", owner: "crashed-replica" });
  });
});
