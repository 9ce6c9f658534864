import type { IntegrationFields } from "../domain/integration.js";
import type { IntegrationStore, ListOptions, StoredIntegration } from "./integration-store.js";

/** Default number of integrations the cache keeps. */
export const DEFAULT_CACHED_INTEGRATIONS = 10_000;

/**
 * An {@link IntegrationStore} that keeps the integrations it has read in
 * memory, so a send does not query the database for its integration.
 *
 * Writes through this object (create, update, delete) invalidate the entry
 * of the id they change. Nothing else does: a change made by another
 * process that shares the database is not seen until this process restarts
 * or writes that id itself. Use it only where this process is the only
 * writer, such as the embedded SQLite store.
 *
 * Cached integrations are frozen (shallowly) and shared between callers.
 */
export class CachedIntegrationStore implements IntegrationStore {
  readonly #inner: IntegrationStore;
  readonly #maxEntries: number;
  /** Entries in least-recently-used order, oldest first. */
  readonly #entries = new Map<string, StoredIntegration>();
  /**
   * Grows on every write. A read that overlapped a write may have read the
   * old row, so it caches nothing.
   */
  #generation = 0;

  constructor(inner: IntegrationStore, maxEntries = DEFAULT_CACHED_INTEGRATIONS) {
    this.#inner = inner;
    this.#maxEntries = maxEntries;
  }

  async get(id: string): Promise<StoredIntegration | null> {
    const cached = this.#entries.get(id);
    if (cached !== undefined) {
      this.#entries.delete(id);
      this.#entries.set(id, cached);
      return cached;
    }

    const generation = this.#generation;
    const found = await this.#inner.get(id);
    if (found === null || generation !== this.#generation) {
      return found;
    }
    const frozen = Object.freeze(found);
    this.#entries.set(id, frozen);
    if (this.#entries.size > this.#maxEntries) {
      this.#entries.delete(this.#entries.keys().next().value!);
    }
    return frozen;
  }

  create(fields: IntegrationFields, id?: string): Promise<StoredIntegration> {
    return this.#write(id, () => this.#inner.create(fields, id));
  }

  update(id: string, fields: IntegrationFields): Promise<StoredIntegration> {
    return this.#write(id, () => this.#inner.update(id, fields));
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
    this.#entries.clear();
    await this.#inner.close();
  }

  /** Runs a write, dropping the id's entry before and after it, whether or not it succeeds. */
  async #write<T>(id: string | undefined, write: () => Promise<T>): Promise<T> {
    this.#invalidate(id);
    try {
      return await write();
    } finally {
      this.#invalidate(id);
    }
  }

  #invalidate(id: string | undefined): void {
    this.#generation++;
    if (id !== undefined) {
      this.#entries.delete(id);
    }
  }
}
