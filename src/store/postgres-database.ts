import { Kysely, PostgresDialect } from "kysely";
import type { Logger } from "pino";

import { BoundedPostgresPool } from "./bounded-postgres-pool.js";
import type { StoreDatabase } from "./database-schema.js";
import { loadPg } from "./pg-module.js";
import { summarizeDatabaseError } from "./storage-error.js";

/** How long opening a connection may take before the query fails, in milliseconds. */
export const POSTGRES_CONNECT_TIMEOUT_MS = 5_000;

/** Timeouts of the store's PostgreSQL connections, in milliseconds. */
export interface PostgresTimeouts {
  /** How long opening a connection, or waiting for a free one in a full pool, may take. */
  connectTimeoutMs: number;
  /**
   * PostgreSQL's `statement_timeout`: the server cancels a statement that
   * runs longer, lock waits included. 0 leaves the server's own setting.
   */
  statementTimeoutMs: number;
  /**
   * How long a query may wait for its reply before the service closes the
   * connection and fails the query; 0 waits without limit. It must be longer
   * than `statementTimeoutMs`, so that a slow statement on a live server
   * fails with the server's error, and only a silent server or network hits
   * this timeout.
   */
  queryTimeoutMs: number;
}

/**
 * Timeouts of the service's store. Every store statement touches one row or
 * one page, so the statement timeout only cuts off a database that hangs.
 * The 2 s between the two timeouts leave room for the server's cancel and
 * the round trip of its reply.
 */
export const DEFAULT_POSTGRES_TIMEOUTS: PostgresTimeouts = {
  connectTimeoutMs: POSTGRES_CONNECT_TIMEOUT_MS,
  statementTimeoutMs: 10_000,
  queryTimeoutMs: 12_000,
};

/**
 * Idle time of a connection before TCP keepalive probes check that the
 * server is still there, in milliseconds. Node 20.20 on Linux then sends
 * 10 probes 1 s apart (seen with strace), so a silent server counts as gone
 * about 20 s after the connection went quiet. Probes are not sent while a
 * query's own bytes wait for their acknowledgement. They matter most for
 * the migrations, which run without a query timeout.
 */
const POSTGRES_KEEPALIVE_IDLE_MS = 10_000;

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
 * Creates a Kysely instance over a pg Pool for the URL, with the timeouts
 * of {@link DEFAULT_POSTGRES_TIMEOUTS} unless `timeouts` replaces some. No
 * connection is opened until the first query. A query without a reply
 * within the query timeout fails with a QueryTimeoutError (see
 * BoundedPostgresPool), and pooled connections use TCP keepalive. A
 * `statement_timeout` in the URL's query string replaces the configured one,
 * and the query timeout then keeps its margin above it.
 *
 * Errors of idle pooled connections are logged as a summary: the pool emits
 * them with the client attached, and an unhandled pool error would end the
 * process.
 *
 * @throws Error when the query timeout is not longer than the statement timeout.
 */
export async function createPostgresDatabase(
  databaseUrl: string,
  description: string,
  logger: Logger,
  timeouts: Partial<PostgresTimeouts> = {},
): Promise<Kysely<StoreDatabase>> {
  const { connectTimeoutMs, statementTimeoutMs, queryTimeoutMs } = { ...DEFAULT_POSTGRES_TIMEOUTS, ...timeouts };
  if (queryTimeoutMs !== 0 && statementTimeoutMs !== 0 && queryTimeoutMs <= statementTimeoutMs) {
    throw new Error(
      `invalid PostgreSQL timeouts: the query timeout (${queryTimeoutMs} ms) must be longer than the statement timeout (${statementTimeoutMs} ms), ` +
        "so that a slow statement fails with the server's error",
    );
  }

  const urlStatementTimeoutMs = statementTimeoutInUrl(databaseUrl);
  const boundMs = queryTimeoutAbove(urlStatementTimeoutMs, statementTimeoutMs, queryTimeoutMs);

  const pg = await loadPg();
  const pool = new pg.Pool({
    connectionString: databaseUrl,
    // Parameters in the URL take precedence over these.
    application_name: "smsgateway",
    connectionTimeoutMillis: connectTimeoutMs,
    // pg sends no statement_timeout for 0.
    statement_timeout: statementTimeoutMs,
    keepAlive: true,
    keepAliveInitialDelayMillis: POSTGRES_KEEPALIVE_IDLE_MS,
  });

  pool.on("error", (error) => {
    logger.warn(
      { database: description, err: summarizeDatabaseError(error) },
      "idle PostgreSQL connection failed; the pool opens a new one when needed",
    );
  });

  return new Kysely<StoreDatabase>({
    dialect: new PostgresDialect({ pool: new BoundedPostgresPool(pool, { queryTimeoutMs: boundMs, description }) }),
  });
}

/**
 * Returns the statement timeout in milliseconds that a `statement_timeout`
 * parameter of the URL's query string sets, as pg 8.23 sends it in place of
 * the configured one: the value read by `parseInt`. Returns 0 for an empty
 * value, which pg does not send, so the server's own setting applies, and
 * that setting is unknown here. Returns undefined when the URL sets none, or
 * a value that is no number, which the server rejects at connect.
 */
function statementTimeoutInUrl(databaseUrl: string): number | undefined {
  const queryStart = databaseUrl.indexOf("?");
  if (queryStart === -1) {
    return undefined;
  }
  const query = databaseUrl.slice(queryStart + 1).split("#", 1)[0];
  const value = new URLSearchParams(query).get("statement_timeout");
  if (value === null) {
    return undefined;
  }
  if (value === "") {
    return 0;
  }
  const milliseconds = Number.parseInt(value, 10);
  return Number.isNaN(milliseconds) ? undefined : milliseconds;
}

/**
 * Returns the query timeout to use when the URL replaces the statement
 * timeout: `queryTimeoutMs`, or the URL's statement timeout plus the same
 * margin when that is longer. With no statement timeout on the server
 * (0), a statement may run for any time, so no query timeout can tell a slow
 * statement from a silent server, and queries wait without one.
 */
function queryTimeoutAbove(urlStatementTimeoutMs: number | undefined, statementTimeoutMs: number, queryTimeoutMs: number): number {
  if (urlStatementTimeoutMs === undefined || queryTimeoutMs === 0) {
    return queryTimeoutMs;
  }
  if (urlStatementTimeoutMs === 0) {
    return 0;
  }
  return Math.max(queryTimeoutMs, urlStatementTimeoutMs + queryTimeoutMs - statementTimeoutMs);
}
