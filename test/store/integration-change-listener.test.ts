import { createHash } from "node:crypto";

import pg from "pg";
import { afterEach, beforeAll, describe, expect, test } from "vitest";

import { cacheIntegrations, type ListeningIntegrationCache } from "../../src/store/integration-cache.js";
import type { ChangeListenerTiming } from "../../src/store/integration-change-listener.js";
import type { IntegrationStore, SecretColumnsStore } from "../../src/store/integration-store.js";
import { openStore } from "../../src/store/open-store.js";
import { eventually } from "../helpers/eventually.js";
import { FreezableTcpProxy } from "./freezable-tcp-proxy.js";
import { capturingLogger, sampleFields, silentLogger } from "./integration-fixtures.js";
import { ObservedStore } from "./observed-store.js";
import { assertPostgresReachable, dropSchema, SKIP_POSTGRES, TEST_DATABASE_URL, uniqueSchemaName } from "./postgres-test-database.js";

/** Short waits, so that reconnections happen within a test. */
const FAST_TIMING: Partial<ChangeListenerTiming> = {
  retryBaseDelayMs: 50,
  retryMaxDelayMs: 200,
  heartbeatIntervalMs: 200,
  heartbeatTimeoutMs: 2_000,
};

/** How soon a change made through one replica must reach another's cache. */
const CONVERGENCE_MS = 1_000;

/** Generous bound for reconnections, which include backoff. */
const RECONNECT_MS = 10_000;

/** Two replicas on one schema: one that writes without a cache, and a cache kept fresh by a listener. */
interface Replicas {
  schema: string;
  writer: IntegrationStore & SecretColumnsStore;
  /** The store under the cache, which counts the reads that reach the database. */
  observed: ObservedStore;
  cache: ListeningIntegrationCache;
  /** Parsed log lines of the cache's listener. */
  logs(): Record<string, unknown>[];
}

async function query(text: string, values: unknown[] = []): Promise<pg.QueryResult> {
  const client = new pg.Client({ connectionString: TEST_DATABASE_URL, connectionTimeoutMillis: 5_000 });
  await client.connect();
  try {
    return await client.query(text, values);
  } finally {
    await client.end();
  }
}

function waitForState(replicas: Replicas, state: string, timeoutMs = RECONNECT_MS) {
  return eventually(async () => replicas.cache.listener.state, (current) => current === state, `listener state ${state}`, { timeoutMs });
}

describe.skipIf(SKIP_POSTGRES)("integration change listener", () => {
  const cleanups: (() => Promise<unknown>)[] = [];

  beforeAll(assertPostgresReachable);

  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) {
      await cleanup();
    }
  });

  /** Opens the two replicas on a new schema and waits until the cache listens. */
  async function openReplicas(options: { schema?: string; listenerUrl?: string; timing?: Partial<ChangeListenerTiming> } = {}): Promise<Replicas> {
    const schema = options.schema ?? uniqueSchemaName();
    cleanups.push(() => dropSchema(schema));
    const open = async () =>
      (await openStore({ databaseUrl: TEST_DATABASE_URL, schema, dataDir: "/nonexistent/unused", logger: silentLogger() })).store;

    const writer = await open();
    cleanups.push(() => writer.close());
    const observed = new ObservedStore(await open());
    const { logger, lines } = capturingLogger();
    const cache = cacheIntegrations(observed, {
      postgres: { databaseUrl: options.listenerUrl ?? TEST_DATABASE_URL, schema, description: "test database" },
      logger,
      listenerTiming: { ...FAST_TIMING, ...options.timing },
    }) as ListeningIntegrationCache;
    cleanups.push(() => cache.close());

    const replicas = { schema, writer, observed, cache, logs: () => lines.map((line) => JSON.parse(line) as Record<string, unknown>) };
    await waitForState(replicas, "listening");
    return replicas;
  }

  /** Starts a freezable proxy in front of the test database and returns it with the database URL through it. */
  async function proxiedDatabase(): Promise<{ proxy: FreezableTcpProxy; listenerUrl: URL }> {
    const target = new URL(TEST_DATABASE_URL);
    const proxy = await FreezableTcpProxy.start({ host: target.hostname, port: Number(target.port || 5432) });
    cleanups.push(() => proxy.close());
    const listenerUrl = new URL(TEST_DATABASE_URL);
    listenerUrl.hostname = "127.0.0.1";
    listenerUrl.port = String(proxy.port);
    return { proxy, listenerUrl };
  }

  /** Reads an id twice through the cache and checks that only the first read reached the database. */
  async function expectCached(replicas: Replicas, id: string): Promise<void> {
    await replicas.cache.get(id);
    const reads = replicas.observed.reads;
    await replicas.cache.get(id);
    await replicas.cache.get(id);
    expect(replicas.observed.reads).toBe(reads);
  }

  test("caches only once it listens", async () => {
    const schema = uniqueSchemaName();
    cleanups.push(() => dropSchema(schema));
    const { store } = await openStore({ databaseUrl: TEST_DATABASE_URL, schema, dataDir: "/nonexistent/unused", logger: silentLogger() });
    const observed = new ObservedStore(store);
    const { id } = await store.create(sampleFields());
    const cache = cacheIntegrations(observed, {
      postgres: { databaseUrl: TEST_DATABASE_URL, schema, description: "test database" },
      logger: silentLogger(),
      listenerTiming: FAST_TIMING,
    }) as ListeningIntegrationCache;
    cleanups.push(() => cache.close());

    expect(cache.listener.state).toBe("connecting");
    expect(cache.suspended).toBe(true);
    await cache.get(id);
    await cache.get(id);
    expect(observed.reads).toBe(2);

    await eventually(async () => cache.listener.state, (state) => state === "listening", "listening", { timeoutMs: RECONNECT_MS });
    expect(cache.suspended).toBe(false);
    await cache.get(id);
    await cache.get(id);
    expect(observed.reads).toBe(3);
  });

  test("update by another replica reaches the cache", async () => {
    const replicas = await openReplicas();
    const { id } = await replicas.writer.create(sampleFields({ defaultSender: "Old" }));
    await expectCached(replicas, id);

    await replicas.writer.update(id, sampleFields({ defaultSender: "New" }));

    const { value } = await eventually(() => replicas.cache.get(id), (read) => read?.defaultSender === "New", "new sender", {
      timeoutMs: CONVERGENCE_MS,
    });
    expect(value?.version).toBe(2);
    await expectCached(replicas, id);
  });

  test("delete by another replica reaches the cache", async () => {
    const replicas = await openReplicas();
    const { id } = await replicas.writer.create(sampleFields());
    await expectCached(replicas, id);

    await replicas.writer.delete(id);

    await eventually(() => replicas.cache.get(id), (read) => read === null, "deleted", { timeoutMs: CONVERGENCE_MS });
  });

  test("secret rewrite and manual SQL reach the cache", async () => {
    const replicas = await openReplicas();
    const created = await replicas.writer.create(sampleFields());
    await expectCached(replicas, created.id);

    const rewritten = { apiKey: "rewritten-api-key", secretKey: created.secretKey };
    expect(await replicas.writer.replaceSecrets(created.id, { apiKey: created.apiKey, secretKey: created.secretKey }, rewritten)).toBe(true);
    await eventually(() => replicas.cache.get(created.id), (read) => read?.apiKey === "rewritten-api-key", "rewritten secret", {
      timeoutMs: CONVERGENCE_MS,
    });

    await query(`update ${pg.escapeIdentifier(replicas.schema)}.integrations set display_name = 'by hand' where id = $1`, [created.id]);
    await eventually(() => replicas.cache.get(created.id), (read) => read?.displayName === "by hand", "manual edit", {
      timeoutMs: CONVERGENCE_MS,
    });
  });

  test("truncate clears the cache", async () => {
    const replicas = await openReplicas();
    const { id } = await replicas.writer.create(sampleFields());
    await expectCached(replicas, id);

    await query(`truncate ${pg.escapeIdentifier(replicas.schema)}.integrations cascade`);

    await eventually(() => replicas.cache.get(id), (read) => read === null, "truncated", { timeoutMs: CONVERGENCE_MS });
  });

  test("changes in another schema are not heard", async () => {
    const replicas = await openReplicas();
    const other = await openReplicas();
    await replicas.writer.create(sampleFields({ defaultSender: "Mine" }), "same-id");
    await other.writer.create(sampleFields({ defaultSender: "Theirs" }), "same-id");
    const { id: marker } = await replicas.writer.create(sampleFields());
    await expectCached(replicas, "same-id");
    await expectCached(replicas, marker);

    await other.writer.update("same-id", sampleFields({ defaultSender: "Theirs, changed" }));
    await replicas.writer.update(marker, sampleFields({ defaultSender: "Marker, changed" }));
    // The marker's notification was sent after the other schema's, so once it has arrived, the other would have too.
    await eventually(() => replicas.cache.get(marker), (read) => read?.defaultSender === "Marker, changed", "marker", {
      timeoutMs: CONVERGENCE_MS,
    });

    await expectCached(replicas, "same-id");
    expect((await replicas.cache.get("same-id"))?.defaultSender).toBe("Mine");
  });

  test("channel is named by the schema", async () => {
    const short = await openReplicas();
    const long = await openReplicas({ schema: `${uniqueSchemaName()}_${"x".repeat(63)}`.slice(0, 63) });
    const channelOf = (replicas: Replicas) => replicas.logs().find((line) => typeof line.channel === "string")?.channel;

    expect(channelOf(short)).toBe(`smsgateway_integrations.${short.schema}`);
    expect(channelOf(long)).toBe(`smsgateway_integrations.${createHash("md5").update(long.schema).digest("hex")}`);
    const { id } = await long.writer.create(sampleFields({ defaultSender: "Old" }));
    await expectCached(long, id);
    await long.writer.update(id, sampleFields({ defaultSender: "New" }));
    await eventually(() => long.cache.get(id), (read) => read?.defaultSender === "New", "new sender", { timeoutMs: CONVERGENCE_MS });
  });

  test("terminated listener bypasses the cache, then resumes", async () => {
    // A first retry after 0.75 to 1.5 s leaves time to read while disconnected.
    const replicas = await openReplicas({ timing: { retryBaseDelayMs: 1_500, retryMaxDelayMs: 1_500 } });
    const { id } = await replicas.writer.create(sampleFields({ defaultSender: "Before" }));
    await expectCached(replicas, id);
    const firstPid = replicas.cache.listener.backendPid;

    await query("select pg_terminate_backend($1)", [firstPid]);
    await waitForState(replicas, "reconnecting", CONVERGENCE_MS);
    await replicas.writer.update(id, sampleFields({ defaultSender: "While disconnected" }));

    expect(replicas.cache.suspended).toBe(true);
    const reads = replicas.observed.reads;
    expect((await replicas.cache.get(id))?.defaultSender).toBe("While disconnected");
    expect((await replicas.cache.get(id))?.defaultSender).toBe("While disconnected");
    expect(replicas.observed.reads).toBe(reads + 2);
    expect(replicas.cache.listener.state).toBe("reconnecting");

    await waitForState(replicas, "listening");
    expect(replicas.cache.listener.backendPid).not.toBe(firstPid);
    await expectCached(replicas, id);
    await replicas.writer.update(id, sampleFields({ defaultSender: "After" }));
    await eventually(() => replicas.cache.get(id), (read) => read?.defaultSender === "After", "sender after reconnection", {
      timeoutMs: CONVERGENCE_MS,
    });

    const messages = replicas.logs().map((line) => line.msg);
    expect(messages).toContain(
      "lost the connection that listens for integration changes; sends read integrations from the database until it is back",
    );
    const recovered = replicas.logs().find((line) => line.msg === "listening for integration changes again; the integration cache restarts empty");
    expect(recovered).toMatchObject({ level: 30, failedAttempts: 0 });
    expect(recovered?.downMs).toBeGreaterThanOrEqual(0);
  });

  test("heartbeat finds a silently dead connection", async () => {
    const { proxy, listenerUrl } = await proxiedDatabase();
    const replicas = await openReplicas({
      listenerUrl: listenerUrl.toString(),
      timing: { heartbeatIntervalMs: 100, heartbeatTimeoutMs: 500, connectTimeoutMs: 500, retryBaseDelayMs: 100, retryMaxDelayMs: 300 },
    });
    const { id } = await replicas.writer.create(sampleFields());
    await expectCached(replicas, id);

    proxy.freeze();

    await waitForState(replicas, "reconnecting");
    expect(replicas.cache.suspended).toBe(true);
    await eventually(
      async () => replicas.logs().filter((line) => line.msg?.toString().startsWith("could not listen for integration changes")).length,
      (failures) => failures >= 2,
      "failed reconnection attempts",
      { timeoutMs: RECONNECT_MS },
    );

    proxy.thaw();

    await waitForState(replicas, "listening");
    await expectCached(replicas, id);
  });

  test("close during a stalled reconnect returns", async () => {
    const { proxy, listenerUrl } = await proxiedDatabase();
    // The connect timeout is far longer than the close may take.
    const replicas = await openReplicas({
      listenerUrl: listenerUrl.toString(),
      timing: { heartbeatIntervalMs: 100, heartbeatTimeoutMs: 500, connectTimeoutMs: 30_000, retryBaseDelayMs: 100, retryMaxDelayMs: 100 },
    });
    proxy.freeze();
    await waitForState(replicas, "reconnecting");
    // The next attempt starts after the 100 ms retry delay, and the frozen proxy keeps it waiting.
    await new Promise((resolve) => setTimeout(resolve, 500));

    const closing = replicas.cache.close().then(() => "closed");
    const outcome = await Promise.race([closing, new Promise((resolve) => setTimeout(() => resolve("still closing after 10 s"), 10_000))]);

    expect(outcome).toBe("closed");
    expect(replicas.cache.listener.state).toBe("closed");
  }, 20_000);

  test("close ends the listening connection", async () => {
    const replicas = await openReplicas();
    const pid = replicas.cache.listener.backendPid;

    await replicas.cache.close();

    expect(replicas.cache.listener.state).toBe("closed");
    await eventually(
      async () => (await query("select count(*)::int as n from pg_stat_activity where pid = $1", [pid])).rows[0].n as number,
      (count) => count === 0,
      "listener backend gone",
      { timeoutMs: RECONNECT_MS },
    );
  });
});
