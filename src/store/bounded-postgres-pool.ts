import type { PostgresCursor, PostgresPool, PostgresPoolClient, PostgresQueryResult } from "kysely";
import type pg from "pg";

/**
 * No reply to a query arrived within the query timeout, so the service gave
 * up on it and closed its connection. The statement may or may not have run
 * on the server.
 */
export class QueryTimeoutError extends Error {
  override readonly name = "QueryTimeoutError";
  /** The code Node gives a socket operation that timed out, so logs and summaries show one. */
  readonly code = "ETIMEDOUT";
}

/** Query timeout and database description of a {@link BoundedPostgresPool}. */
export interface BoundedPostgresPoolOptions {
  /** How long a query may wait for its reply, in milliseconds; 0 waits without limit. */
  queryTimeoutMs: number;
  /** The database for error messages, without a password. */
  description: string;
}

/**
 * A pg Pool, as Kysely's PostgresDialect takes it, that limits on the client
 * side how long each query waits for its reply.
 *
 * PostgreSQL's statement_timeout runs on the server, so it cannot end a
 * query whose bytes or reply a network drops. Such a query fails with
 * {@link QueryTimeoutError} after `queryTimeoutMs`, and its connection is
 * closed rather than returned to the pool, so later queries get a new
 * connection. pg's own `query_timeout` (pg 8.23) fails the query but keeps
 * the connection, and the next query on it waits behind the lost reply.
 *
 * It also handles the `error` events of a connection while it is checked
 * out. pg-pool listens only while the connection is idle, and pg emits the
 * event when a connection breaks during a query (a TCP reset, or a socket
 * that closes without PostgreSQL's error message). Without a listener, that
 * event would end the process.
 */
export class BoundedPostgresPool implements PostgresPool {
  readonly #pool: pg.Pool;
  readonly #options: BoundedPostgresPoolOptions;

  constructor(pool: pg.Pool, options: BoundedPostgresPoolOptions) {
    this.#pool = pool;
    this.#options = options;
  }

  async connect(): Promise<PostgresPoolClient> {
    return new CheckedOutClient(await this.#pool.connect(), this.#options);
  }

  end(): Promise<void> {
    return this.#pool.end();
  }
}

/** A pooled connection for one checkout, with the query timeout of {@link BoundedPostgresPool}. */
class CheckedOutClient implements PostgresPoolClient {
  readonly #client: pg.PoolClient;
  readonly #options: BoundedPostgresPoolOptions;
  #timedOut = false;

  constructor(client: pg.PoolClient, options: BoundedPostgresPoolOptions) {
    this.#client = client;
    this.#options = options;
    client.on("error", ignoreCheckedOutError);
  }

  query<R>(sql: string, parameters: readonly unknown[]): Promise<PostgresQueryResult<R>>;
  query<R>(cursor: PostgresCursor<R>): PostgresCursor<R>;
  query<R>(statement: string | PostgresCursor<R>, parameters: readonly unknown[] = []): Promise<PostgresQueryResult<R>> | PostgresCursor<R> {
    if (typeof statement !== "string") {
      // Kysely passes a cursor only when the dialect has a `cursor` class, which the store does not set.
      throw new Error("streaming queries are not supported by the store's PostgreSQL pool");
    }

    // pg types `command` as any string, where Kysely lists the commands it reads; the values are the same.
    const reply = this.#client.query(statement, [...parameters]) as unknown as Promise<PostgresQueryResult<R>>;
    const { queryTimeoutMs, description } = this.#options;
    if (queryTimeoutMs === 0) {
      return reply;
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#timedOut = true;
        // The query was sent, so pg's end() destroys the socket at once instead of waiting for the reply.
        void this.#client.end();
        reject(
          new QueryTimeoutError(
            `PostgreSQL at ${description} did not reply within ${queryTimeoutMs} ms, so the service closed the connection. ` +
              "Check that the server runs and that the network to it passes traffic.",
          ),
        );
      }, queryTimeoutMs);
      // After the timeout the reply fails with "Connection terminated", which the settled promise ignores.
      reply.then(
        (result) => {
          clearTimeout(timer);
          resolve(result);
        },
        (error: unknown) => {
          clearTimeout(timer);
          reject(error);
        },
      );
    });
  }

  release(destroy?: boolean): void {
    // pg-pool closes a connection released with `true`, and one that ended or broke.
    this.#client.release(destroy === true || this.#timedOut);
    this.#client.removeListener("error", ignoreCheckedOutError);
  }
}

/**
 * Handles a connection error during a checkout. pg fails the pending query,
 * if any, with the same error, the store reports that one, and the pool
 * closes the broken connection when it is released.
 */
function ignoreCheckedOutError(): void {}
