import type { IntegrationFields } from "../domain/integration.js";
import type { IntegrationStore, ListOptions, ReadVersion, StoredIntegration } from "./integration-store.js";

/** Default number of integrations the cache keeps. */
export const DEFAULT_CACHED_INTEGRATIONS = 10_000;

/** Size and initial state of a {@link CachedIntegrationStore}. */
export interface CachedIntegrationStoreOptions {
  /**
   * Most integrations kept. When a new one does not fit, one that was not read
   * since the last eviction goes first (see {@link CachedIntegrationStore}).
   * Defaults to {@link DEFAULT_CACHED_INTEGRATIONS}.
   */
  maxEntries?: number;
  /** Start suspended: every read goes to the wrapped store until {@link CachedIntegrationStore.resume}. */
  suspended?: boolean;
}

/** A cached integration, marked when read since it was added or last passed over by an eviction. */
interface CacheEntry {
  readonly integration: StoredIntegration;
  read: boolean;
}

/** Receives the id of an integration that may have changed, or undefined when any may have. */
export type IntegrationChangeCallback = (id: string | undefined) => void;

/**
 * An {@link IntegrationStore} that keeps the integrations it has read in
 * memory, so a send does not query the database for its integration.
 *
 * Writes through this object (create, update, delete) invalidate the entry
 * of the id they change. Changes made by other processes reach it through
 * {@link invalidate} and {@link clear}, which a change listener calls. A
 * listener that may have missed changes calls {@link suspend}: from then on
 * every read goes to the wrapped store and nothing is kept, until
 * {@link resume}. Callbacks given to {@link onChange} hear of each of
 * these changes.
 *
 * Cached integrations are frozen (shallowly) and shared between callers.
 *
 * Eviction follows the second-chance (clock) order, which comes close to
 * least recently used: a read only marks its entry, and the entry to evict is
 * the oldest one not marked since it was last passed over. Moving the entry
 * to the end of the map on every read, as an exact order would, rebuilt the
 * map's hash table from time to time.
 */
export class CachedIntegrationStore implements IntegrationStore {
  readonly #inner: IntegrationStore;
  readonly #maxEntries: number;
  /** Entries in the order they were added or last passed over by an eviction, oldest first. */
  readonly #entries = new Map<string, CacheEntry>();
  /**
   * Grows on every write, invalidation, suspension and resumption. A read
   * that overlapped one of them may have read an old row, so it caches
   * nothing.
   */
  #generation = 0;
  #suspended: boolean;
  readonly #changeCallbacks: IntegrationChangeCallback[] = [];

  constructor(inner: IntegrationStore, options: CachedIntegrationStoreOptions = {}) {
    this.#inner = inner;
    this.#maxEntries = options.maxEntries ?? DEFAULT_CACHED_INTEGRATIONS;
    this.#suspended = options.suspended ?? false;
  }

  /** True while reads bypass the cache. */
  get suspended(): boolean {
    return this.#suspended;
  }

  async get(id: string): Promise<StoredIntegration | null> {
    const cached = this.#entries.get(id);
    if (cached !== undefined) {
      cached.read = true;
      return cached.integration;
    }

    const generation = this.#generation;
    const found = await this.#inner.get(id);
    if (found === null || this.#suspended || generation !== this.#generation) {
      return found;
    }
    const frozen = Object.freeze(found);
    if (!this.#entries.has(id) && this.#entries.size >= this.#maxEntries) {
      this.#evictOne();
    }
    this.#entries.set(id, { integration: frozen, read: false });
    return frozen;
  }

  create(fields: IntegrationFields, id?: string): Promise<StoredIntegration> {
    return this.#write(id, () => this.#inner.create(fields, id));
  }

  update(id: string, fields: IntegrationFields, read?: ReadVersion): Promise<StoredIntegration> {
    return this.#write(id, () => this.#inner.update(id, fields, read));
  }

  delete(id: string): Promise<boolean> {
    return this.#write(id, () => this.#inner.delete(id));
  }

  list(options: ListOptions): Promise<StoredIntegration[]> {
    return this.#inner.list(options);
  }

  ping(): Promise<void> {
    return this.#inner.ping();
  }

  async close(): Promise<void> {
    this.#dropAll();
    await this.#inner.close();
  }

  /**
   * Calls `callback` after an integration may have changed: after a write
   * through this object ends, successful or not, and after each of
   * {@link invalidate}, {@link clear}, {@link suspend} and {@link resume}.
   * The callback runs synchronously and must not throw.
   */
  onChange(callback: IntegrationChangeCallback): void {
    this.#changeCallbacks.push(callback);
  }

  /** Drops the entry of an integration that changed elsewhere; reads in progress keep nothing. */
  invalidate(id: string): void {
    this.#drop(id);
    this.#announce(id);
  }

  /** Drops every entry; reads in progress keep nothing. */
  clear(): void {
    this.#dropAll();
    this.#announce(undefined);
  }

  /** Drops every entry and sends every read to the wrapped store until {@link resume}. */
  suspend(): void {
    this.#suspended = true;
    this.clear();
  }

  /**
   * Keeps integrations again, starting empty. Reads that began before this
   * call keep nothing, because they may have read a row whose change
   * notification was missed.
   */
  resume(): void {
    this.#dropAll();
    this.#suspended = false;
    this.#announce(undefined);
  }

  /** Runs a write, dropping the id's entry before and after it, whether or not it succeeds. */
  async #write<T>(id: string | undefined, write: () => Promise<T>): Promise<T> {
    this.#dropForWrite(id);
    try {
      return await write();
    } finally {
      this.#dropForWrite(id);
      if (id !== undefined) {
        this.#announce(id);
      }
    }
  }

  #dropForWrite(id: string | undefined): void {
    if (id === undefined) {
      this.#generation++;
    } else {
      this.#drop(id);
    }
  }

  /**
   * Evicts the oldest entry not read since it was added or last passed over.
   * Each entry passed over loses its mark and moves to the end, so the loop
   * ends within one pass over the entries.
   */
  #evictOne(): void {
    for (const [id, entry] of this.#entries) {
      this.#entries.delete(id);
      if (!entry.read) {
        return;
      }
      entry.read = false;
      this.#entries.set(id, entry);
    }
  }

  #drop(id: string): void {
    this.#generation++;
    this.#entries.delete(id);
  }

  #dropAll(): void {
    this.#generation++;
    this.#entries.clear();
  }

  #announce(id: string | undefined): void {
    for (const callback of this.#changeCallbacks) {
      callback(id);
    }
  }
}
