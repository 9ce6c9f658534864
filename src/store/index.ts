/**
 * Public API of the integration store: open it with {@link openStore} and use
 * it through {@link IntegrationStore}.
 */
export type {
  IntegrationStore,
  ListOptions,
  SecretColumnsStore,
  StoredIntegration,
  StoredSecrets,
} from "./integration-store.js";
export { INTEGRATION_RESOURCE } from "./integration-store.js";
export type {
  IdempotencyClaim,
  IdempotencyOutcome,
  IdempotencyRecord,
  IdempotencyState,
  IdempotencyStore,
} from "./idempotency-store.js";
export { openStore, type OpenedStore, type OpenStoreOptions } from "./open-store.js";
export { newIntegrationId, INTEGRATION_ID_PREFIX } from "./integration-id.js";
export { StorageError, summarizeDatabaseError, type DatabaseErrorSummary } from "./storage-error.js";
