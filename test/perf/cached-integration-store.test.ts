import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { CachedIntegrationStore } from "../../src/store/cached-integration-store.js";
import { openStore } from "../../src/store/open-store.js";
import { sampleFields, silentLogger } from "../store/integration-fixtures.js";
import { ObservedStore } from "../store/observed-store.js";
import { describeStoreContract } from "../store/store-contract.js";

describeStoreContract("Cached SQLite", async () => {
  const dataDir = await mkdtemp(path.join(tmpdir(), "smsgateway-cache-"));
  return {
    open: async () => new CachedIntegrationStore((await openStore({ dataDir, logger: silentLogger() })).store),
    dispose: () => rm(dataDir, { recursive: true, force: true }),
  };
});

describe("cache behaviour", () => {
  let dataDir: string;
  let observed: ObservedStore;
  let cache: CachedIntegrationStore;

  beforeEach(async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), "smsgateway-cache-"));
    observed = new ObservedStore((await openStore({ dataDir, logger: silentLogger() })).store);
    cache = new CachedIntegrationStore(observed, { maxEntries: 2 });
  });

  afterEach(async () => {
    await cache.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  test("second read comes from memory", async () => {
    const { id } = await cache.create(sampleFields());

    const first = await cache.get(id);
    const second = await cache.get(id);

    expect(second).toBe(first);
    expect(observed.reads).toBe(1);
    expect(Object.isFrozen(second)).toBe(true);
  });

  test("update replaces the cached entry", async () => {
    const { id } = await cache.create(sampleFields());
    await cache.get(id);

    await cache.update(id, sampleFields({ defaultSender: "Changed" }));
    const read = await cache.get(id);

    expect(read?.defaultSender).toBe("Changed");
    expect(read?.version).toBe(2);
  });

  test("delete drops the cached entry", async () => {
    const { id } = await cache.create(sampleFields());
    await cache.get(id);

    await cache.delete(id);

    expect(await cache.get(id)).toBeNull();
  });

  test("missing ids are not cached", async () => {
    expect(await cache.get("int_missing")).toBeNull();
    expect(await cache.get("int_missing")).toBeNull();

    expect(observed.reads).toBe(2);
  });

  test("read overlapping a write is not cached", async () => {
    const { id } = await cache.create(sampleFields({ defaultSender: "Old" }));
    const release = observed.holdReads();
    const slowRead = cache.get(id);
    await cache.update(id, sampleFields({ defaultSender: "New" }));
    release();

    expect((await slowRead)?.defaultSender).toBe("Old");
    expect((await cache.get(id))?.defaultSender).toBe("New");
  });

  /** Stores `count` integrations through the cache and returns their ids. */
  async function createIds(count: number): Promise<string[]> {
    const ids = [];
    for (let i = 0; i < count; i++) {
      ids.push((await cache.create(sampleFields())).id);
    }
    return ids;
  }

  test("least recently used entry is evicted", async () => {
    const ids = await createIds(3);
    await cache.get(ids[0]!);
    await cache.get(ids[1]!);
    await cache.get(ids[0]!);
    await cache.get(ids[2]!);
    const readsBefore = observed.reads;

    await cache.get(ids[0]!);
    await cache.get(ids[1]!);

    expect(observed.reads - readsBefore).toBe(1);
  });

  test("new entry outlives read older ones", async () => {
    const ids = await createIds(3);
    await cache.get(ids[0]!);
    await cache.get(ids[1]!);
    await cache.get(ids[0]!);
    await cache.get(ids[1]!);
    await cache.get(ids[2]!);
    const readsBefore = observed.reads;

    await cache.get(ids[2]!);
    await cache.get(ids[1]!);

    // Both older entries were read, so the eviction passed over both and took the oldest, ids[0].
    expect(observed.reads - readsBefore).toBe(0);
    await cache.get(ids[0]!);
    expect(observed.reads - readsBefore).toBe(1);
  });

  test("entry read between new ids stays", async () => {
    const [hot, ...others] = await createIds(6);
    await cache.get(hot!);
    const readsBefore = observed.reads;

    for (const id of others) {
      await cache.get(hot!);
      await cache.get(id);
    }
    await cache.get(hot!);

    expect(observed.reads - readsBefore).toBe(others.length);
  });

  test("invalidate drops one entry", async () => {
    const first = await cache.create(sampleFields());
    const second = await cache.create(sampleFields());
    await cache.get(first.id);
    await cache.get(second.id);
    const readsBefore = observed.reads;

    cache.invalidate(first.id);
    await cache.get(first.id);
    await cache.get(second.id);

    expect(observed.reads - readsBefore).toBe(1);
  });

  test("read overlapping an invalidation is not cached", async () => {
    const { id } = await cache.create(sampleFields());
    const release = observed.holdReads();
    const slowRead = cache.get(id);
    cache.invalidate("int_other");
    release();
    await slowRead;

    await cache.get(id);

    expect(observed.reads).toBe(2);
  });

  test("change callbacks follow each change", async () => {
    const changedIds: (string | undefined)[] = [];
    const sendersRead: Promise<string | undefined>[] = [];
    cache.onChange((id) => {
      changedIds.push(id);
      if (id === "int_named") {
        sendersRead.push(cache.get(id).then((read) => read?.defaultSender));
      }
    });

    await cache.create(sampleFields({ defaultSender: "First" }), "int_named");
    await cache.create(sampleFields());
    await cache.update("int_named", sampleFields({ defaultSender: "Second" }));
    await cache.delete("int_named");
    cache.invalidate("int_other");
    cache.clear();
    cache.suspend();
    cache.resume();

    expect(changedIds).toEqual(["int_named", "int_named", "int_named", "int_other", undefined, undefined, undefined]);
    expect(await Promise.all(sendersRead)).toEqual(["First", "Second", undefined]);
  });

  test("suspended cache reads through", async () => {
    const { id } = await cache.create(sampleFields());
    await cache.get(id);

    cache.suspend();
    await cache.get(id);
    await cache.get(id);

    expect(cache.suspended).toBe(true);
    expect(observed.reads).toBe(3);
  });

  test("resume caches again", async () => {
    const suspended = new CachedIntegrationStore(observed, { suspended: true });
    const { id } = await suspended.create(sampleFields());
    await suspended.get(id);

    suspended.resume();
    await suspended.get(id);
    await suspended.get(id);

    expect(suspended.suspended).toBe(false);
    expect(observed.reads).toBe(2);
  });

  test("read overlapping a resume is not cached", async () => {
    const suspended = new CachedIntegrationStore(observed, { suspended: true });
    const { id } = await suspended.create(sampleFields());
    const release = observed.holdReads();
    const slowRead = suspended.get(id);
    suspended.resume();
    release();
    await slowRead;

    await suspended.get(id);

    expect(observed.reads).toBe(2);
  });
});
