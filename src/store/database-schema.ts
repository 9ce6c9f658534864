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
}

/** The tables of the store. */
export interface StoreDatabase {
  integrations: IntegrationRow;
}
