import type Database from "better-sqlite3";
import {
  CompiledQuery,
  SqliteDialect,
  type DatabaseConnection,
  type Driver,
  type QueryResult,
  type SqliteDatabase,
} from "kysely";

/** A statement waiting for the next group commit, and the caller waiting for its result. */
interface Pending {
  query: CompiledQuery;
  resolve(result: QueryResult<unknown>): void;
  reject(error: unknown): void;
}

/** A statement's result or error, settled only once its group is committed. */
type Outcome = { result: QueryResult<unknown> } | { error: unknown };

/**
 * Kysely's SQLite dialect for better-sqlite3, with the driver replaced by
 * {@link GroupCommitDriver}.
 */
export class GroupCommitSqliteDialect extends SqliteDialect {
  readonly #database: Database.Database;
  readonly #statements: SqliteDatabase;

  /** @param statements prepares the statements of `database`, for example through a statement cache. */
  constructor(database: Database.Database, statements: SqliteDatabase) {
    super({ database: statements });
    this.#database = database;
    this.#statements = statements;
  }

  override createDriver(): Driver {
    return new GroupCommitDriver(this.#database, this.#statements);
  }
}

/**
 * A Kysely driver for one better-sqlite3 connection that commits the
 * statements of one event-loop turn together.
 *
 * Each commit of a small statement in WAL mode appends every page it
 * changed to the log, so a send with an idempotency key, which commits
 * twice, wrote about 24 KB. Under a burst of sends those writes and the
 * checkpoints that copy them back made each statement wait for the disk on
 * the event loop. This driver queues the statements that callers issue
 * during one turn and runs them at the end of it in one transaction, so a
 * page that several of them change is written once.
 *
 * Each statement keeps its own result and error. A caller's promise settles
 * only after the commit, so what it reads or writes is durable as far as
 * `synchronous` makes it. A statement that fails (a constraint, say) leaves
 * the others in place. When a failure ends the whole transaction, or the
 * commit fails, the driver runs each statement of the group again in a
 * transaction of its own, so that each caller gets its own outcome. When the
 * write lock cannot be taken within busy_timeout, the whole group fails with
 * that error, so the event loop waits for the lock once per group.
 *
 * A Kysely transaction (`db.transaction()`) has the connection to itself
 * until it ends, and statements of other callers wait for the group after it.
 */
export class GroupCommitDriver implements Driver {
  readonly #database: Database.Database;
  readonly #statements: SqliteDatabase;
  #queue: Pending[] = [];
  #flushScheduled = false;
  /** The connection that runs a Kysely transaction, while one runs. */
  #transactionOwner: GroupCommitConnection | undefined;
  /** Callers of beginTransaction waiting for the one that runs. */
  readonly #transactionWaiters: Array<() => void> = [];

  constructor(database: Database.Database, statements: SqliteDatabase) {
    this.#database = database;
    this.#statements = statements;
  }

  async init(): Promise<void> {}

  async acquireConnection(): Promise<DatabaseConnection> {
    return new GroupCommitConnection(this);
  }

  async beginTransaction(connection: DatabaseConnection): Promise<void> {
    while (this.#transactionOwner !== undefined) {
      await new Promise<void>((resolve) => this.#transactionWaiters.push(resolve));
    }
    // Statements queued before the transaction commit first, outside it.
    this.#flush();
    this.#transactionOwner = connection as GroupCommitConnection;
    this.run(CompiledQuery.raw("begin"));
  }

  async commitTransaction(connection: DatabaseConnection): Promise<void> {
    this.#endTransaction(connection, "commit");
  }

  async rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    this.#endTransaction(connection, "rollback");
  }

  async releaseConnection(): Promise<void> {}

  /** Commits the statements still queued, then closes the database. */
  async destroy(): Promise<void> {
    this.#flush();
    this.#statements.close();
  }

  /** Runs one statement now, on the connection as it is. */
  run(query: CompiledQuery): QueryResult<unknown> {
    const statement = this.#statements.prepare(query.sql);
    if (statement.reader) {
      return { rows: statement.all(query.parameters) };
    }
    const { changes, lastInsertRowid } = statement.run(query.parameters);
    return { numAffectedRows: BigInt(changes), insertId: BigInt(lastInsertRowid), rows: [] };
  }

  /** Runs a statement of `connection`: at once inside its transaction, else with the next group. */
  execute(connection: GroupCommitConnection, query: CompiledQuery): Promise<QueryResult<unknown>> {
    if (this.#transactionOwner === connection) {
      return Promise.resolve(this.run(query));
    }
    return new Promise((resolve, reject) => {
      this.#queue.push({ query, resolve, reject });
      if (!this.#flushScheduled) {
        this.#flushScheduled = true;
        setImmediate(() => {
          this.#flushScheduled = false;
          this.#flush();
        });
      }
    });
  }

  #endTransaction(connection: DatabaseConnection, statement: "commit" | "rollback"): void {
    if (this.#transactionOwner !== connection) {
      // Kysely rolls back after a failed commit, which has already ended the transaction.
      if (statement === "rollback") {
        return;
      }
      throw new Error("commit failed: this connection has no open transaction");
    }
    try {
      // A failed statement may have rolled the transaction back already.
      if (statement === "commit" || this.#database.inTransaction) {
        this.run(CompiledQuery.raw(statement));
      }
    } catch (error) {
      if (this.#database.inTransaction) {
        this.run(CompiledQuery.raw("rollback"));
      }
      throw error;
    } finally {
      this.#transactionOwner = undefined;
      this.#transactionWaiters.shift()?.();
      this.#flush();
    }
  }

  /** Runs the queued statements, unless a Kysely transaction is open. The end of the transaction runs them. */
  #flush(): void {
    if (this.#transactionOwner !== undefined || this.#queue.length === 0) {
      return;
    }
    const group = this.#queue;
    this.#queue = [];

    const outcomes = group.length === 1 ? undefined : this.#runTogether(group);
    const settled = outcomes ?? group.map((pending) => this.#runAlone(pending.query));
    group.forEach((pending, index) => {
      const outcome = settled[index]!;
      if ("result" in outcome) {
        pending.resolve(outcome.result);
      } else {
        pending.reject(outcome.error);
      }
    });
  }

  /**
   * Runs the group in one transaction. Returns undefined when the
   * transaction did not commit, so that nothing of it was kept.
   */
  #runTogether(group: readonly Pending[]): Outcome[] | undefined {
    try {
      // IMMEDIATE takes the write lock at the start, so another process's writer makes it wait (busy_timeout) instead of failing midway.
      this.run(CompiledQuery.raw("begin immediate"));
    } catch (error) {
      // Usually another process still holds the lock after busy_timeout. Each statement run
      // alone would wait as long again on the event loop, so the whole group fails at once.
      return group.map(() => ({ error }));
    }
    const outcomes: Outcome[] = [];
    for (const pending of group) {
      outcomes.push(this.#runAlone(pending.query));
      if (!this.#database.inTransaction) {
        // The failure rolled back the whole transaction.
        return undefined;
      }
    }
    try {
      this.run(CompiledQuery.raw("commit"));
      return outcomes;
    } catch {
      if (this.#database.inTransaction) {
        this.run(CompiledQuery.raw("rollback"));
      }
      return undefined;
    }
  }

  #runAlone(query: CompiledQuery): Outcome {
    try {
      return { result: this.run(query) };
    } catch (error) {
      return { error };
    }
  }
}

/** A caller's handle on the shared connection; Kysely acquires one per query or transaction. */
class GroupCommitConnection implements DatabaseConnection {
  readonly #driver: GroupCommitDriver;

  constructor(driver: GroupCommitDriver) {
    this.#driver = driver;
  }

  executeQuery<R>(query: CompiledQuery): Promise<QueryResult<R>> {
    return this.#driver.execute(this, query) as Promise<QueryResult<R>>;
  }

  // eslint-disable-next-line require-yield
  async *streamQuery<R>(): AsyncIterableIterator<QueryResult<R>> {
    throw new Error("streaming query results is not supported by the SQLite store; use execute()");
  }
}
