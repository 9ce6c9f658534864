/**
 * Row types of the store's tables, which Kysely checks every query against.
 * Column types are chosen to mean the same on SQLite and PostgreSQL, so one
 * set of queries serves both.
 */

/** A row of `integrations`. */
export interface IntegrationRow {
  /** Primary key; compared in byte order on both databases. */
  id: string;
  display_name: string;
  base_url: string;
  api_key_header: string;
  /** `v1:<keyId>:<base64url>` ciphertext from the encrypting store, or legacy plain text. */
  api_key: string;
  secret_key_header: string;
  /** Same format as `api_key`; "" when there is no second credential. */
  secret_key: string;
  default_sender: string;
  id_path: string;
  date_path: string;
  /** 0 or 1, because SQLite has no boolean type. */
  authenticate_by_token: number;
  auth_url: string;
  token_key: string;
  /** 0 means the service default; added by migration `0002_integration_limits`. */
  max_concurrent_sends: number;
  /** 0 means the service default; REAL on SQLite, DOUBLE PRECISION on PostgreSQL. */
  max_sends_per_second: number;
  /** ISO-8601 in UTC with milliseconds (`2026-01-02T03:04:05.678Z`), so text order is time order. */
  create_time: string;
  /** Same format as `create_time`. */
  update_time: string;
  /** 1 on insert, incremented by every update. */
  version: number;
  /** Seconds a token from `auth_url` is reused; null means the service default. */
  token_lifetime_seconds: number | null;
}

/** The tables of the store. */
export interface StoreDatabase {
  integrations: IntegrationRow;
  idempotency_keys: IdempotencyKeyRow;
  encryption_key_checks: EncryptionKeyCheckRow;
}

/** A row of `encryption_key_checks`: proof of which key was first configured under a key id. */
export interface EncryptionKeyCheckRow {
  /** Primary key; compared in byte order on both databases. */
  key_id: string;
  /** A fixed text encrypted under the key, in the `v1:<keyId>:<base64url>` format of the secrets. */
  check_value: string;
  /** When the row was inserted; same time format as `integrations.create_time`. */
  create_time: string;
}

/** A row of `idempotency_keys`: one send request's claim on a key, and its outcome. */
export interface IdempotencyKeyRow {
  /** The integration the key belongs to; keys are scoped per integration. */
  integration_id: string;
  idempotency_key: string;
  /** SHA-256 (hex) of the request that first used the key. */
  request_hash: string;
  /** `pending`, `done` or `retryable`; see `IdempotencyState`. */
  state: string;
  /** Random id of the send that holds or last held the claim. */
  owner: string;
  /** While `pending`: when the owner's claim lapses. Same time format as `create_time`. */
  lease_expire_time: string;
  /** When the row may be purged. */
  expire_time: string;
  /** JSON of the stored outcome, null while `pending`. */
  outcome: string | null;
  create_time: string;
  update_time: string;
}
