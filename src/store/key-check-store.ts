import type { StoredSecrets } from "./integration-store.js";

/** The stored secrets of one integration, exactly as stored. */
export interface IntegrationSecrets extends StoredSecrets {
  integrationId: string;
}

/**
 * Store of the records about the encryption keys of the stored secrets: one
 * check value per key id (table `encryption_key_checks`), and the key ids
 * that the stored secrets name. The service reads it at start-up to find a
 * wrong or missing key before it serves.
 */
export interface KeyCheckStore {
  /** Returns the stored check values of these key ids, by key id; an id without a row is absent. */
  readChecks(keyIds: readonly string[]): Promise<Map<string, string>>;

  /**
   * Inserts the check value of a key id unless the id has one, in one
   * statement, so that of several processes inserting at once exactly one
   * row is kept.
   *
   * @returns true when this call inserted the row.
   */
  insertCheck(keyId: string, checkValue: string): Promise<boolean>;

  /**
   * Counts, per key id, the integrations with a secret encrypted under that
   * id, in one query over `integrations`. Legacy plain text, empty secrets
   * and malformed ciphertexts count under no id.
   */
  countIntegrationsByKeyId(): Promise<Map<string, number>>;

  /** Returns up to `limit` integrations, in id order, that have a secret encrypted under `keyId`. */
  secretsUnderKey(keyId: string, limit: number): Promise<IntegrationSecrets[]>;
}
