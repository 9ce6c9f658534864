/**
 * The PostgreSQL notifications that tell replicas an integration changed:
 * the channel they are sent on and the payloads they carry.
 *
 * Migration `0004_integration_change_notify` installs a trigger that sends
 * one on every insert, update and delete of a row of `integrations`, and on
 * a TRUNCATE, in the transaction of the change. PostgreSQL delivers a
 * notification only when that transaction commits.
 */

/** Channel names longer than this many bytes are cut by PostgreSQL (NAMEDATALEN - 1). */
const MAX_CHANNEL_BYTES = 63;

/** Start of every channel name; the schema, or its MD5, follows. */
const CHANNEL_PREFIX = "smsgateway_integrations.";

/** Longest schema name that fits in the channel name as it is. */
const MAX_PLAIN_SCHEMA_BYTES = MAX_CHANNEL_BYTES - CHANNEL_PREFIX.length;

/**
 * Returns the SQL expression of the channel for the schema named by
 * `schemaName`, itself an SQL expression of type text.
 *
 * The channel contains the schema name, so deployments and test runs that
 * share a database with a schema each do not hear each other. A schema name
 * longer than 39 bytes is replaced by its MD5 in hex, so that the channel
 * fits in PostgreSQL's 63 bytes.
 *
 * Migration `0004_integration_change_notify` writes this expression into
 * its trigger function, and the listener evaluates the same expression to
 * find its channel, so both sides always agree. Never change it: a new
 * channel rule needs a new migration that replaces the trigger function,
 * and a new expression for the listener.
 */
export function changeChannelSql(schemaName: string): string {
  return (
    `'${CHANNEL_PREFIX}' || case when octet_length(${schemaName}) <= ${MAX_PLAIN_SCHEMA_BYTES} ` +
    `then ${schemaName} else md5(${schemaName}) end`
  );
}

/**
 * One notification: a row written (`insert`, `update`, `delete`, with the
 * row's id and version; a delete carries the version of the deleted row),
 * every row removed (`truncate`), or a listener's own heartbeat (`ping`).
 */
export type IntegrationChange =
  | { op: "insert" | "update" | "delete"; id: string; version: number }
  | { op: "truncate" }
  | { op: "ping"; nonce: string };

/** Builds the payload of a heartbeat, which only the listener that sent it waits for. */
export function pingPayload(nonce: string): string {
  return JSON.stringify({ op: "ping", nonce });
}

/**
 * Parses a notification payload; returns undefined when it is not one that
 * this version of the service sends.
 */
export function parseChange(payload: string): IntegrationChange | undefined {
  let value: unknown;
  try {
    value = JSON.parse(payload);
  } catch {
    return undefined;
  }
  if (typeof value !== "object" || value === null) {
    return undefined;
  }

  const { op, id, version, nonce } = value as Record<string, unknown>;
  switch (op) {
    case "insert":
    case "update":
    case "delete":
      return typeof id === "string" && Number.isSafeInteger(version) ? { op, id, version: version as number } : undefined;
    case "truncate":
      return { op };
    case "ping":
      return typeof nonce === "string" ? { op, nonce } : undefined;
    default:
      return undefined;
  }
}
