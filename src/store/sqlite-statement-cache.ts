import type Database from "better-sqlite3";
import type { SqliteDatabase, SqliteStatement } from "kysely";

/** Maximum number of distinct SQL texts whose prepared statements are kept. */
export const MAX_CACHED_STATEMENTS = 256;

/**
 * Wraps a better-sqlite3 database for Kysely's SqliteDialect so that each
 * SQL text is prepared once and its statement reused. Kysely prepares every
 * query anew, and a profile of sends with idempotency keys showed preparing
 * as a tenth of their CPU time. The store's queries use parameters, so the
 * set of SQL texts is small; the least recently used statement is dropped
 * beyond {@link MAX_CACHED_STATEMENTS}.
 *
 * A statement that is still being iterated (`busy`) is not handed out
 * again: that query gets a fresh statement.
 */
export function withStatementCache(database: Database.Database, maxStatements = MAX_CACHED_STATEMENTS): SqliteDatabase {
  const statements = new Map<string, Database.Statement>();

  return {
    close: () => database.close(),
    prepare(sql: string): SqliteStatement {
      const cached = statements.get(sql);
      if (cached !== undefined && !cached.busy) {
        // Moving the entry to the end of the map keeps the map in order of last use.
        statements.delete(sql);
        statements.set(sql, cached);
        return cached;
      }
      const statement = database.prepare(sql);
      if (cached === undefined) {
        statements.set(sql, statement);
        if (statements.size > maxStatements) {
          statements.delete(statements.keys().next().value!);
        }
      }
      return statement;
    },
  };
}
