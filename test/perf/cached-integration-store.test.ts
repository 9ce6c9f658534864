import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import type { IntegrationFields } from "../../src/domain/integration.js";
import { CachedIntegrationStore } from "../../src/store/cached-integration-store.js";
import type { IntegrationStore, ListOptions, StoredIntegration } from "../../src/store/integration-store.js";
import { openStore } from "../../src/store/open-store.js";
import { sampleFields, silentLogger } from "../store/integration-fixtures.js";
import { describeStoreContract } from "../store/store-contract.js";

describeStoreContract("Cached SQLite", async () => {
  const dataDir = await mkdtemp(path.join(tmpdir(), "smsgateway-cache-"));
  return {
    open: async () => new CachedIntegrationStore((await openStore({ dataDir, logger: silentLogger() })).store),
    dispose: () => rm(dataDir, { recursive: true, force: true }),
  };
});

/** A real store that counts its reads and can hold them until the test lets them go. */
class ObservedStore implements IntegrationStore {
  reads = 0;
  private gate: Promise<void> | undefined;

  constructor(private readonly inner: IntegrationStore) {}

  /** Makes reads wait, after reading the row, until the returned function is called. */
  holdReads(): () => void {
    let release!: () => void;
    this.gate = new Promise((resolve) => (release = resolve));
    return () => {
      this.gate = undefined;
      release();
    };
  }

  async get(id: string): Promise<StoredIntegration | null> {
    this.reads++;
    const found = await this.inner.get(id);
    await this.gate;
    return found;
  }

  create(fields: IntegrationFields, id?: string) {
    return this.inner.create(fields, id);
  }

  update(id: string, fields: IntegrationFields) {
    return this.inner.update(id, fields);
  }

  list(options: ListOptions) {
    return this.inner.list(options);
  }

  delete(id: string) {
    return this.inner.delete(id);
  }

  ping() {
    return this.inner.ping();
  }

  close() {
    return this.inner.close();
  }
}

describe("cache behaviour", () => {
  let dataDir: string;
  let observed: ObservedStore;
  let cache: CachedIntegrationStore;

  beforeEach(async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), "smsgateway-cache-"));
    observed = new ObservedStore((await openStore({ dataDir, logger: silentLogger() })).store);
    cache = new CachedIntegrationStore(observed, 2);
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

  test("least recently used entry is evicted", async () => {
    const ids = [];
    for (let i = 0; i < 3; i++) {
      ids.push((await cache.create(sampleFields())).id);
    }
    await cache.get(ids[0]!);
    await cache.get(ids[1]!);
    await cache.get(ids[0]!);
    await cache.get(ids[2]!);
    const readsBefore = observed.reads;

    await cache.get(ids[0]!);
    await cache.get(ids[1]!);

    expect(observed.reads - readsBefore).toBe(1);
  });
});
