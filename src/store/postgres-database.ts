import { Kysely, PostgresDialect } from "kysely";
import type { Logger } from "pino";

import type { StoreDatabase } from "./database-schema.js";
import { loadPg } from "./pg-module.js";
import { summarizeDatabaseError } from "./storage-error.js";

/** How long opening a connection may take before the query fails, in milliseconds. */
export const POSTGRES_CONNECT_TIMEOUT_MS = 5_000;

/**
 * Maximum time a statement may run, lock waits included, in milliseconds. Every
 * store statement touches one row or one page, so this only cuts off a
 * database that hangs.
 */
const POSTGRES_STATEMENT_TIMEOUT_MS = 10_000;

/** Schema of the tables when the caller names none. */
export const DEFAULT_POSTGRES_SCHEMA = "public";

/** PostgreSQL truncates longer identifiers, in bytes. */
export const MAX_SCHEMA_NAME_BYTES = 63;

/** Returns whether the URL selects PostgreSQL (`postgres://` or `postgresql://`). */
export function isPostgresUrl(databaseUrl: string): boolean {
  return /^postgres(ql)?:\/\//i.test(databaseUrl);
}

/**
 * Describes a PostgreSQL URL for logs: the URL without password, query or
 * fragment, followed by the schema when it is not `public`.
 *
 * The query is dropped whole because parameters such as `sslpassword` can
 * hold secrets, except the `host` parameter of a URL without a host, which
 * names the folder of a Unix socket.
 *
 * @throws Error when the URL cannot be parsed; the message leaves the URL out.
 */
export function describePostgresUrl(databaseUrl: string, schema: string = DEFAULT_POSTGRES_SCHEMA): string {
  let url: URL;
  try {
    url = new URL(databaseUrl);
  } catch {
    throw new Error(
      "invalid PostgreSQL database URL: it cannot be parsed; expected postgres://user:password@host:port/database",
    );
  }

  // A URL without a host names a Unix socket folder in its host parameter, which is no secret.
  const socketFolder = url.hostname === "" ? url.searchParams.get("host") : null;
  url.password = "";
  url.search = "";
  url.hash = "";
  const text = socketFolder === null ? url.toString() : `${url.toString()}?host=${socketFolder}`;
  return schema === DEFAULT_POSTGRES_SCHEMA ? text : `${text} (schema ${schema})`;
}

/**
 * Creates a Kysely instance over a pg Pool for the URL. No connection is
 * opened until the first query.
 *
 * Errors of idle pooled connections are logged as a summary: the pool emits
 * them with the client attached, and an unhandled pool error would end the
 * process.
 */
export async function createPostgresDatabase(
  databaseUrl: string,
  description: string,
  logger: Logger,
): Promise<Kysely<StoreDatabase>> {
  const pg = await loadPg();
  const pool = new pg.Pool({
    connectionString: databaseUrl,
    // Parameters in the URL take precedence over these.
    application_name: "smsgateway",
    connectionTimeoutMillis: POSTGRES_CONNECT_TIMEOUT_MS,
    statement_timeout: POSTGRES_STATEMENT_TIMEOUT_MS,
  });

  pool.on("error", (error) => {
    logger.warn(
      { database: description, err: summarizeDatabaseError(error) },
      "idle PostgreSQL connection failed; the pool opens a new one when needed",
    );
  });

  return new Kysely<StoreDatabase>({ dialect: new PostgresDialect({ pool }) });
}
