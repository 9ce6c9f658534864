import type { IntegrationFields } from "../domain/integration.js";
import { InvalidArgumentError, type FieldViolation } from "../errors.js";
import type { IntegrationRow } from "./database-schema.js";
import type { StoredIntegration } from "./integration-store.js";

/** The columns a caller's fields fill: every column but the id, the times and the version. */
export type IntegrationFieldColumns = Omit<IntegrationRow, "id" | "create_time" | "update_time" | "version">;

type TextFieldName = {
  [K in keyof IntegrationFields]-?: IntegrationFields[K] extends string ? K : never;
}[keyof IntegrationFields];

/** Column of each text field, which is also its snake_case name in the API. */
const TEXT_FIELD_COLUMNS: Record<TextFieldName, keyof IntegrationFieldColumns> = {
  displayName: "display_name",
  baseUrl: "base_url",
  apiKeyHeader: "api_key_header",
  apiKey: "api_key",
  secretKeyHeader: "secret_key_header",
  secretKey: "secret_key",
  defaultSender: "default_sender",
  idPath: "id_path",
  datePath: "date_path",
  authUrl: "auth_url",
  tokenKey: "token_key",
};

/**
 * Rejects text that one of the databases cannot store, so both behave alike.
 *
 * PostgreSQL text cannot hold U+0000 while SQLite can; rejecting it on both
 * keeps an integration portable between them.
 *
 * @throws InvalidArgumentError naming each field as `integration.<snake_case>`.
 */
export function assertStorable(fields: IntegrationFields, id?: string): void {
  const description = "must not contain the NUL character (U+0000)";
  const violations: FieldViolation[] = [];

  if (id?.includes("\u0000")) {
    violations.push({ field: "integration.id", description });
  }
  for (const [field, column] of Object.entries(TEXT_FIELD_COLUMNS)) {
    if (fields[field as TextFieldName].includes("\u0000")) {
      violations.push({ field: `integration.${column}`, description });
    }
  }

  if (violations.length > 0) {
    throw new InvalidArgumentError(violations);
  }
}

/** Converts a caller's fields to their columns. */
export function toFieldColumns(fields: IntegrationFields): IntegrationFieldColumns {
  return {
    display_name: fields.displayName,
    base_url: fields.baseUrl,
    api_key_header: fields.apiKeyHeader,
    api_key: fields.apiKey,
    secret_key_header: fields.secretKeyHeader,
    secret_key: fields.secretKey,
    default_sender: fields.defaultSender,
    id_path: fields.idPath,
    date_path: fields.datePath,
    authenticate_by_token: fields.authenticateByToken ? 1 : 0,
    auth_url: fields.authUrl,
    token_key: fields.tokenKey,
    max_concurrent_sends: fields.maxConcurrentSends,
    max_sends_per_second: fields.maxSendsPerSecond,
    token_lifetime_seconds: fields.tokenLifetimeSeconds ?? null,
  };
}

/** Formats a time as stored: ISO-8601 in UTC with milliseconds. */
export function toStoredTime(time: Date): string {
  return time.toISOString();
}

/** Converts a stored row to the domain object. */
export function fromRow(row: IntegrationRow): StoredIntegration {
  return {
    id: row.id,
    displayName: row.display_name,
    baseUrl: row.base_url,
    apiKeyHeader: row.api_key_header,
    apiKey: row.api_key,
    secretKeyHeader: row.secret_key_header,
    secretKey: row.secret_key,
    defaultSender: row.default_sender,
    idPath: row.id_path,
    datePath: row.date_path,
    authenticateByToken: row.authenticate_by_token === 1,
    authUrl: row.auth_url,
    tokenKey: row.token_key,
    maxConcurrentSends: row.max_concurrent_sends,
    maxSendsPerSecond: row.max_sends_per_second,
    tokenLifetimeSeconds: row.token_lifetime_seconds,
    createTime: new Date(row.create_time),
    updateTime: new Date(row.update_time),
    version: row.version,
  };
}
