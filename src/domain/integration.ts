/**
 * An SMS gateway integration as the service stores and uses it. Secrets are
 * plain text here; they are masked at the API boundary.
 */
export interface Integration {
  id: string;
  displayName: string;
  baseUrl: string;
  apiKeyHeader: string;
  apiKey: string;
  /** Empty when no second credential header is configured. */
  secretKeyHeader: string;
  secretKey: string;
  defaultSender: string;
  /** Dot path to the message id in the gateway's reply, never empty. */
  idPath: string;
  /** Dot path to the send date in the gateway's reply, never empty. */
  datePath: string;
  authenticateByToken: boolean;
  authUrl: string;
  tokenKey: string;
  /** Maximum sends in flight at once; 0 means the service default (`SEND_CONCURRENCY`). */
  maxConcurrentSends: number;
  /** Maximum sends per second; 0 means the service default (`SEND_RATE_PER_SECOND`). */
  maxSendsPerSecond: number;
  /**
   * Seconds a token from `authUrl` is reused when its reply gives no expiry.
   * 0 fetches a token for every send; null or missing means the service default.
   */
  tokenLifetimeSeconds?: number | null;
  createTime: Date;
  updateTime: Date;
}

/** The fields a caller sets; the store assigns the id (when empty) and the times. */
export type IntegrationFields = Omit<Integration, "id" | "createTime" | "updateTime">;

export const DEFAULT_ID_PATH = "data.id";
export const DEFAULT_DATE_PATH = "data.date";

/** A field of an integration that names a header, with the name it holds. */
export interface HeaderNameField {
  /** The field name as callers see it, such as `api_key_header`. */
  field: string;
  name: string;
}

/**
 * Lists the fields that name a credential header of the SMS request, in
 * field order, leaving out the empty ones and `token_key` when the
 * integration does not authenticate by token.
 */
export function credentialHeaderFields(fields: IntegrationFields): HeaderNameField[] {
  const entries = [
    { field: "api_key_header", name: fields.apiKeyHeader },
    { field: "secret_key_header", name: fields.secretKeyHeader },
    { field: "token_key", name: fields.authenticateByToken ? fields.tokenKey : "" },
  ];
  return entries.filter((entry) => entry.name !== "");
}
