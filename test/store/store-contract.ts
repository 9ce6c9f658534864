import { afterEach, beforeEach, describe, expect, test } from "vitest";

import type { IntegrationFields } from "../../src/domain/integration.js";
import { AlreadyExistsError, InvalidArgumentError, NotFoundError, VersionConflictError } from "../../src/errors.js";
import type { IntegrationStore, StoredIntegration } from "../../src/store/integration-store.js";
import { sampleFields, sleep } from "./integration-fixtures.js";

/** Storage that a contract test can open several stores on, and remove afterwards. */
export interface StoreLocation {
  /** Opens a new store instance on this location's data, running migrations. */
  open(): Promise<IntegrationStore>;
  /** Removes the data; every store opened here is closed before. */
  dispose(): Promise<void>;
}

const ASSIGNED_ID = /^int_[0-9a-hjkmnp-tv-z]{26}$/;

const UNICODE_FIELDS: IntegrationFields = sampleFields({
  displayName: "Passerelle 短信 🚀 مرحبا e\u0301 𝔘",
  baseUrl: "https://gateway.example/envoi?ville=Zürich",
  apiKeyHeader: "X-Clé",
  apiKey: "key with 'quotes', \"double\", \\ backslash; drop table integrations; --",
  secretKeyHeader: "",
  secretKey: "",
  defaultSender: "Ünïcødé",
  idPath: "réponse.0.identifiant",
  datePath: "réponse.0.date",
  authenticateByToken: true,
  authUrl: "https://auth.example/jeton?x=1&y=ü",
  tokenKey: "jeton_🔑",
});

/** Returns the ids of `integrations`, in order. */
function ids(integrations: StoredIntegration[]): string[] {
  return integrations.map((integration) => integration.id);
}

/**
 * Defines the behaviour every IntegrationStore must show, as one vitest
 * suite. `makeLocation` runs before each test and returns empty storage.
 */
export function describeStoreContract(name: string, makeLocation: () => Promise<StoreLocation>): void {
  describe(`${name} integration store contract`, () => {
    let location: StoreLocation;
    let store: IntegrationStore;
    let opened: IntegrationStore[] = [];

    async function openStore(): Promise<IntegrationStore> {
      const instance = await location.open();
      opened.push(instance);
      return instance;
    }

    beforeEach(async () => {
      location = await makeLocation();
      store = await openStore();
    });

    afterEach(async () => {
      for (const instance of opened) {
        await instance.close();
      }
      opened = [];
      await location.dispose();
    });

    test("create assigns a time-ordered id", async () => {
      const before = Date.now();
      const created = await store.create(sampleFields());
      const after = Date.now();

      expect(created.id).toMatch(ASSIGNED_ID);
      expect(created.version).toBe(1);
      expect(created.updateTime).toEqual(created.createTime);
      expect(created.createTime.getTime()).toBeGreaterThanOrEqual(before);
      expect(created.createTime.getTime()).toBeLessThanOrEqual(after);
    });

    test("create with empty id assigns one", async () => {
      const created = await store.create(sampleFields(), "");

      expect(created.id).toMatch(ASSIGNED_ID);
    });

    test("create keeps a chosen id", async () => {
      const created = await store.create(sampleFields(), "my-gateway_1");

      expect(created.id).toBe("my-gateway_1");
      expect(await store.get("my-gateway_1")).toEqual(created);
    });

    test("create rejects a taken id", async () => {
      const first = await store.create(sampleFields(), "taken");

      const attempt = store.create(sampleFields({ displayName: "second" }), "taken");

      await expect(attempt).rejects.toBeInstanceOf(AlreadyExistsError);
      await expect(attempt).rejects.toMatchObject({ resource: "integration", id: "taken" });
      expect(await store.get("taken")).toEqual(first);
    });

    test("get returns null when missing", async () => {
      expect(await store.get("missing")).toBeNull();
    });

    test("every field round-trips", async () => {
      const created = await store.create(UNICODE_FIELDS, "unicode");
      const read = await store.get("unicode");

      expect(created).toMatchObject(UNICODE_FIELDS);
      expect(read).toEqual(created);
    });

    test("flow limits round-trip", async () => {
      const limits = { maxConcurrentSends: 10_000, maxSendsPerSecond: 0.1 + 0.2 };
      await store.create(sampleFields(limits), "limited");
      await store.update("limited", sampleFields({ maxConcurrentSends: 3, maxSendsPerSecond: 2.5 }));
      await store.create(sampleFields(limits), "limited-2");

      const updated = await store.get("limited");
      const created = await store.get("limited-2");

      expect(updated?.maxConcurrentSends).toBe(3);
      expect(updated?.maxSendsPerSecond).toBe(2.5);
      expect(created?.maxConcurrentSends).toBe(10_000);
      expect(created?.maxSendsPerSecond).toBe(0.1 + 0.2);
    });

    test("boolean false round-trips", async () => {
      await store.create(sampleFields({ authenticateByToken: false }), "plain");

      expect((await store.get("plain"))?.authenticateByToken).toBe(false);
    });

    test("update replaces fields and bumps time and version", async () => {
      const created = await store.create(sampleFields(), "gw");
      await sleep(10);

      const updated = await store.update("gw", UNICODE_FIELDS);

      expect(updated).toMatchObject(UNICODE_FIELDS);
      expect(updated.id).toBe("gw");
      expect(updated.createTime).toEqual(created.createTime);
      expect(updated.updateTime.getTime()).toBeGreaterThan(created.updateTime.getTime());
      expect(updated.version).toBe(2);
      expect(await store.get("gw")).toEqual(updated);
    });

    test("update at the read version writes", async () => {
      const created = await store.create(sampleFields());

      const updated = await store.update(created.id, sampleFields({ defaultSender: "Second" }), created);

      expect(updated.version).toBe(created.version + 1);
      expect(updated.defaultSender).toBe("Second");
    });

    test("update at an old version conflicts", async () => {
      const created = await store.create(sampleFields());
      await store.update(created.id, sampleFields({ defaultSender: "First writer" }));

      const stale = store.update(created.id, sampleFields({ displayName: "Second writer" }), created);

      await expect(stale).rejects.toBeInstanceOf(VersionConflictError);
      const stored = await store.get(created.id);
      expect(stored?.defaultSender).toBe("First writer");
      expect(stored?.displayName).toBe(sampleFields().displayName);
      expect(stored?.version).toBe(created.version + 1);
    });

    test("update at a version of a missing id throws NotFoundError", async () => {
      await expect(store.update("int_missing", sampleFields(), { version: 1, createTime: new Date() })).rejects.toBeInstanceOf(NotFoundError);
    });

    test("update of a row created again conflicts", async () => {
      const first = await store.create(sampleFields(), "recreated");
      await store.delete("recreated");
      await sleep(5);
      const second = await store.create(sampleFields({ defaultSender: "Second row" }), "recreated");

      const stale = store.update("recreated", sampleFields({ displayName: "From the first row" }), first);

      expect(second.version).toBe(first.version);
      await expect(stale).rejects.toBeInstanceOf(VersionConflictError);
      expect((await store.get("recreated"))?.defaultSender).toBe("Second row");
    });

    test("update of a missing id throws NotFoundError", async () => {
      const attempt = store.update("missing", sampleFields());

      await expect(attempt).rejects.toBeInstanceOf(NotFoundError);
      await expect(attempt).rejects.toMatchObject({ resource: "integration", id: "missing" });
      expect(await store.get("missing")).toBeNull();
    });

    test("list pages in id order", async () => {
      const chosen = ["g", "c", "a", "e", "b", "f", "d"];
      for (const id of chosen) {
        await store.create(sampleFields({ displayName: id }), id);
      }

      const first = await store.list({ limit: 3 });
      const second = await store.list({ limit: 3, afterId: "c" });
      const third = await store.list({ limit: 3, afterId: "f" });
      const past = await store.list({ limit: 3, afterId: "g" });

      expect(ids(first)).toEqual(["a", "b", "c"]);
      expect(ids(second)).toEqual(["d", "e", "f"]);
      expect(ids(third)).toEqual(["g"]);
      expect(past).toEqual([]);
      expect(first[0]).toEqual(await store.get("a"));
    });

    test("list starts after a missing afterId", async () => {
      for (const id of ["a", "c", "e"]) {
        await store.create(sampleFields(), id);
      }

      expect(ids(await store.list({ limit: 10, afterId: "b" }))).toEqual(["c", "e"]);
      expect(ids(await store.list({ limit: 10, afterId: "" }))).toEqual(["a", "c", "e"]);
    });

    test("list orders ids bytewise", async () => {
      // Byte order: "-" (0x2d) < "0" (0x30) < "_" (0x5f) < "b" (0x62). A
      // linguistic collation would ignore "-" and "_" and order these differently.
      for (const id of ["b", "ab", "a_b", "a0", "a-b"]) {
        await store.create(sampleFields(), id);
      }

      expect(ids(await store.list({ limit: 10 }))).toEqual(["a-b", "a0", "a_b", "ab", "b"]);
    });

    test("list orders assigned ids by creation", async () => {
      const created: string[] = [];
      for (let i = 0; i < 7; i++) {
        created.push((await store.create(sampleFields({ displayName: `n${i}` }))).id);
      }

      const firstPage = await store.list({ limit: 3 });
      const rest = await store.list({ limit: 10, afterId: firstPage.at(-1)?.id });

      expect([...ids(firstPage), ...ids(rest)]).toEqual(created);
    });

    test("list rejects a limit that is not a positive integer", async () => {
      for (const limit of [0, -1, 1.5, Number.NaN]) {
        await expect(store.list({ limit })).rejects.toBeInstanceOf(RangeError);
      }
    });

    test("delete returns true, then false", async () => {
      await store.create(sampleFields(), "gone");

      expect(await store.delete("gone")).toBe(true);
      expect(await store.get("gone")).toBeNull();
      expect(await store.delete("gone")).toBe(false);
    });

    test("NUL character is rejected on every operation", async () => {
      const create = store.create(sampleFields({ apiKey: "a\u0000b", tokenKey: "\u0000" }));
      const createWithId = store.create(sampleFields(), "a\u0000b");

      await expect(create).rejects.toBeInstanceOf(InvalidArgumentError);
      await expect(create).rejects.toMatchObject({
        violations: [{ field: "integration.api_key" }, { field: "integration.token_key" }],
      });
      await expect(createWithId).rejects.toMatchObject({ violations: [{ field: "integration.id" }] });
      expect(await store.get("a\u0000b")).toBeNull();
      expect(await store.delete("a\u0000b")).toBe(false);
      await expect(store.update("a\u0000b", sampleFields())).rejects.toBeInstanceOf(NotFoundError);
      await store.create(sampleFields(), "a");
      await expect(store.update("a", sampleFields({ displayName: "\u0000" }))).rejects.toBeInstanceOf(
        InvalidArgumentError,
      );
      await store.create(sampleFields(), "a1");
      expect(ids(await store.list({ limit: 10, afterId: "a\u0000z" }))).toEqual(["a1"]);
    });

    test("reopening keeps integrations", async () => {
      const created = await store.create(UNICODE_FIELDS);
      const updated = await store.update(created.id, sampleFields());
      await store.close();

      const reopened = await openStore();

      expect(await reopened.get(created.id)).toEqual(updated);
      expect(ids(await reopened.list({ limit: 10 }))).toEqual([created.id]);
    });

    test("opening twice migrates once", async () => {
      await store.create(sampleFields(), "kept");

      const second = await openStore();
      const third = await openStore();

      expect(await second.get("kept")).not.toBeNull();
      await third.create(sampleFields(), "from-third");
      expect(ids(await store.list({ limit: 10 }))).toEqual(["from-third", "kept"]);
    });

    test("concurrent creates from two instances stay intact", async () => {
      const other = await openStore();
      const perStore = 25;

      const creates = Array.from({ length: perStore * 2 }, (_, i) =>
        (i % 2 === 0 ? store : other).create(sampleFields({ displayName: `item ${i}`, apiKey: `key-${i}` })),
      );
      const contested = [store, other].map((instance, i) =>
        instance.create(sampleFields({ displayName: `contender ${i}` }), "contested"),
      );
      const [created, outcomes] = await Promise.all([Promise.all(creates), Promise.allSettled(contested)]);

      const listed = await store.list({ limit: 1000 });
      const winners = outcomes.filter((outcome) => outcome.status === "fulfilled");
      const losers = outcomes.filter((outcome) => outcome.status === "rejected");
      expect(winners).toHaveLength(1);
      expect(losers).toHaveLength(1);
      expect(losers[0]?.reason).toBeInstanceOf(AlreadyExistsError);
      expect(new Set(ids(created)).size).toBe(perStore * 2);
      expect(listed).toHaveLength(perStore * 2 + 1);
      for (const integration of created) {
        expect(await other.get(integration.id)).toEqual(integration);
      }
    });

    test("concurrent updates count every version", async () => {
      const other = await openStore();
      await store.create(sampleFields(), "busy");
      const updates = 20;

      await Promise.all(
        Array.from({ length: updates }, (_, i) =>
          (i % 2 === 0 ? store : other).update("busy", sampleFields({ displayName: `update ${i}` })),
        ),
      );

      const final = await store.get("busy");
      expect(final?.version).toBe(updates + 1);
      expect(final?.displayName).toMatch(/^update \d+$/);
    });

    test("ping resolves", async () => {
      await expect(store.ping()).resolves.toBeUndefined();
    });

    test("close is idempotent", async () => {
      await store.close();

      await expect(store.close()).resolves.toBeUndefined();
    });
  });
}
