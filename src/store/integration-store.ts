import type { Integration, IntegrationFields } from "../domain/integration.js";
import type { UnreadableSecret } from "../security/unreadable-secrets.js";

/**
 * An integration as read from storage, with its row version.
 *
 * The version starts at 1 and grows by one on every update, so replicas can
 * tell whether a cached copy is stale by comparing one number.
 */
export interface StoredIntegration extends Integration {
  version: number;
  /**
   * Secrets that the configured encryption keys cannot decrypt; each such
   * field reads as "". Set, and only when not empty, by the encrypting store.
   */
  unreadableSecrets?: readonly UnreadableSecret[];
}

/** The version and creation time of the row that an update was computed from. */
export type ReadVersion = Pick<StoredIntegration, "version" | "createTime">;

/** Paging options of {@link IntegrationStore.list}. */
export interface ListOptions {
  /** Maximum number of integrations to return, a positive integer. */
  limit: number;
  /** Id of the last integration of the previous page; the page starts after it. */
  afterId?: string;
}

/**
 * Persistent storage of integrations, one implementation over SQLite and
 * PostgreSQL.
 *
 * Every method is a single statement, so a failed call changes nothing and
 * concurrent callers (several replicas on one PostgreSQL database included)
 * never see a half-written integration.
 */
export interface IntegrationStore {
  /**
   * Inserts an integration. With no id (or an empty one) the store assigns a
   * time-ordered `int_…` id, so id order is creation order.
   *
   * @throws AlreadyExistsError when the id is taken.
   * @throws InvalidArgumentError when a field contains U+0000, which
   *   PostgreSQL cannot store.
   */
  create(fields: IntegrationFields, id?: string): Promise<StoredIntegration>;

  /** Reads one integration; returns null when it does not exist. */
  get(id: string): Promise<StoredIntegration | null>;

  /**
   * Replaces every stored field of an existing integration, keeps its
   * `createTime`, sets `updateTime` to now and increments `version`.
   *
   * With `read`, the row is written only while it is still the one read:
   * the same version of a row created at the same time, so neither a change
   * made since nor a row deleted and created again is overwritten.
   *
   * @throws NotFoundError when the integration does not exist.
   * @throws VersionConflictError when the row is no longer the one `read` describes.
   * @throws InvalidArgumentError when a field contains U+0000.
   */
  update(id: string, fields: IntegrationFields, read?: ReadVersion): Promise<StoredIntegration>;

  /**
   * Reads one page of integrations in ascending id order (byte order of the
   * id), starting after `afterId`.
   *
   * @throws RangeError when `limit` is not a positive integer.
   */
  list(options: ListOptions): Promise<StoredIntegration[]>;

  /** Deletes an integration; returns false when it did not exist. */
  delete(id: string): Promise<boolean>;

  /** Runs a trivial query, so a readiness probe can tell that storage responds. */
  ping(): Promise<void>;

  /** Closes the database file or connection pool; the store is unusable after. */
  close(): Promise<void>;
}

/** The secret columns of a row exactly as stored: ciphertext, legacy plain text, or "". */
export interface StoredSecrets {
  apiKey: string;
  secretKey: string;
}

/** Rewrites the secret columns of a row in place, for re-encryption under a new key. */
export interface SecretColumnsStore {
  /**
   * Replaces the stored `api_key` and `secret_key` of an integration when
   * both still equal `expected`, in one statement, so a concurrent update is
   * never overwritten. Keeps `updateTime` and `version`, because the secrets'
   * plain text does not change, only how it is stored.
   *
   * @returns false when the integration is gone or its secrets changed since
   *   `expected` was read.
   */
  replaceSecrets(id: string, expected: StoredSecrets, replacement: StoredSecrets): Promise<boolean>;
}

/** Resource name used in the store's NotFoundError and AlreadyExistsError. */
export const INTEGRATION_RESOURCE = "integration";
