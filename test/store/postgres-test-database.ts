import { randomBytes } from "node:crypto";

import pg from "pg";

import { summarizeDatabaseError } from "../../src/store/storage-error.js";
import { FreezableTcpProxy } from "./freezable-tcp-proxy.js";

/**
 * PostgreSQL database of the tests: `TEST_DATABASE_URL`, or the local server
 * with trust authentication when the variable is unset or empty.
 */
export const TEST_DATABASE_URL = process.env.TEST_DATABASE_URL || "postgres://postgres@127.0.0.1:5432/test";

/** True when the environment sets `SKIP_POSTGRES=1` to skip the PostgreSQL tests. */
export const SKIP_POSTGRES = process.env.SKIP_POSTGRES === "1";

async function withClient<T>(run: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: TEST_DATABASE_URL, connectionTimeoutMillis: 5_000 });
  await client.connect();
  try {
    return await run(client);
  } finally {
    await client.end();
  }
}

/**
 * Throws an error naming the ways to fix or skip the suite when the test
 * database cannot be reached.
 */
export async function assertPostgresReachable(): Promise<void> {
  try {
    await withClient((client) => client.query("select 1"));
  } catch (error) {
    const { code, message } = summarizeDatabaseError(error);
    throw new Error(
      `PostgreSQL at ${new URL(TEST_DATABASE_URL).host} is unreachable (${code ?? "no code"}: ${message}); ` +
        "start it, point TEST_DATABASE_URL at another server, or set SKIP_POSTGRES=1 to skip these tests",
    );
  }
}

/** Starts a proxy in front of the test database, and returns it with a URL that connects through it. */
export async function proxiedTestDatabase(): Promise<{ proxy: FreezableTcpProxy; databaseUrl: string }> {
  const target = new URL(TEST_DATABASE_URL);
  const proxy = await FreezableTcpProxy.start({ host: target.hostname, port: Number(target.port || 5432) });
  const relayed = new URL(TEST_DATABASE_URL);
  relayed.host = `127.0.0.1:${proxy.port}`;
  return { proxy, databaseUrl: relayed.toString() };
}

/** Returns a schema name no other test run uses. */
export function uniqueSchemaName(): string {
  return `store_test_${randomBytes(6).toString("hex")}`;
}

/** Drops a test schema and everything in it. */
export async function dropSchema(schema: string): Promise<void> {
  await withClient((client) => client.query(`drop schema if exists ${pg.escapeIdentifier(schema)} cascade`));
}

/** Returns the names of the tables in a schema, sorted. */
export async function tablesIn(schema: string): Promise<string[]> {
  const result = await withClient((client) =>
    client.query<{ table_name: string }>(
      "select table_name from information_schema.tables where table_schema = $1 order by table_name",
      [schema],
    ),
  );
  return result.rows.map((row) => row.table_name);
}

/** Returns the collation of a column, or null when it uses the database default. */
export async function columnCollation(schema: string, table: string, column: string): Promise<string | null> {
  const result = await withClient((client) =>
    client.query<{ collation_name: string | null }>(
      "select collation_name from information_schema.columns where table_schema = $1 and table_name = $2 and column_name = $3",
      [schema, table, column],
    ),
  );
  return result.rows[0]?.collation_name ?? null;
}
