import type { Logger } from "pino";

import { CachedIntegrationStore } from "./cached-integration-store.js";
import {
  IntegrationChangeListener,
  type ChangeListenerTiming,
} from "./integration-change-listener.js";
import type { IntegrationStore } from "./integration-store.js";

/** Where the integrations live, which decides how the cache stays fresh. */
export interface IntegrationCacheOptions {
  /**
   * The PostgreSQL database and schema that other replicas may write to;
   * unset for SQLite, whose file this process is the only one to write.
   */
  postgres?: { databaseUrl: string; schema: string; description: string };
  logger: Logger;
  /** Listener timing; tests shorten it. */
  listenerTiming?: Partial<ChangeListenerTiming>;
}

/**
 * A {@link CachedIntegrationStore} kept fresh by an
 * {@link IntegrationChangeListener}, which it owns: closing the store stops
 * the listener first.
 */
export class ListeningIntegrationCache extends CachedIntegrationStore {
  readonly listener: IntegrationChangeListener;

  constructor(inner: IntegrationStore, postgres: NonNullable<IntegrationCacheOptions["postgres"]>, options: IntegrationCacheOptions) {
    // Suspended until the first LISTEN succeeds, because changes made before it would be missed.
    super(inner, { suspended: true });
    this.listener = new IntegrationChangeListener({
      ...postgres,
      subscriber: this,
      logger: options.logger,
      timing: options.listenerTiming,
    });
  }

  override async close(): Promise<void> {
    await this.listener.close();
    await super.close();
  }
}

/**
 * Wraps the integration store in a memory cache, so a send does not query
 * the database for its integration.
 *
 * With SQLite the cache only needs this process's own writes. With
 * PostgreSQL it also starts a listener for the change notifications of
 * every replica, and reads bypass the cache whenever that listener is not
 * connected.
 */
export function cacheIntegrations(inner: IntegrationStore, options: IntegrationCacheOptions): CachedIntegrationStore {
  if (options.postgres === undefined) {
    return new CachedIntegrationStore(inner);
  }
  const cache = new ListeningIntegrationCache(inner, options.postgres, options);
  cache.listener.start();
  return cache;
}
