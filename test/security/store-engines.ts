import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";

import Database from "better-sqlite3";
import pg from "pg";

import type { IntegrationStore, SecretColumnsStore } from "../../src/store/integration-store.js";
import { openStore, type OpenedStore } from "../../src/store/open-store.js";
import { describePostgresUrl } from "../../src/store/postgres-database.js";
import { SQLITE_FILE_NAME } from "../../src/store/sqlite-database.js";
import { silentLogger } from "../store/integration-fixtures.js";
import { dropSchema, SKIP_POSTGRES, TEST_DATABASE_URL, uniqueSchemaName } from "../store/postgres-test-database.js";

/** A row of `integrations` as the database returns it. */
export type RawRow = Record<string, unknown>;

/** Fresh storage on one engine, with access to its rows behind the store's back. */
export interface EngineLocation {
  /** Opens the store without encryption, as `openStore` returns it. */
  openPlain(): Promise<IntegrationStore & SecretColumnsStore>;
  /** Opens the store with its key checks and idempotency keys; closing `store` closes them all. */
  openStore(): Promise<OpenedStore>;
  /** The database as the store's messages name it. */
  description: string;
  /** Reads a row with the database driver, bypassing the store. */
  rawRow(id: string): Promise<RawRow | undefined>;
  /** Reads every row of `encryption_key_checks` with the database driver, in key id order. */
  rawKeyChecks(): Promise<RawRow[]>;
  /** Writes the secret columns of a row with the database driver, bypassing the store. */
  writeRawSecrets(id: string, apiKey: string, secretKey: string): Promise<void>;
  /** Settings that point the re-encrypt command at this storage. */
  command: { env: Record<string, string> };
  dispose(): Promise<void>;
}

/** A database engine the security tests run on. */
export interface StoreEngine {
  name: string;
  skip: boolean;
  open(): Promise<EngineLocation>;
}

async function openSqliteLocation(): Promise<EngineLocation> {
  const dataDir = await mkdtemp(path.join(tmpdir(), "smsgateway-security-"));
  const file = path.join(dataDir, SQLITE_FILE_NAME);
  const withDatabase = <T>(run: (database: Database.Database) => T): T => {
    const database = new Database(file);
    try {
      return run(database);
    } finally {
      database.close();
    }
  };

  return {
    openPlain: async () => (await openStore({ dataDir, logger: silentLogger() })).store,
    openStore: () => openStore({ dataDir, logger: silentLogger() }),
    description: `sqlite:${file}`,
    rawRow: async (id) => withDatabase((database) => database.prepare("select * from integrations where id = ?").get(id) as RawRow | undefined),
    rawKeyChecks: async () => withDatabase((database) => database.prepare("select * from encryption_key_checks order by key_id").all() as RawRow[]),
    writeRawSecrets: async (id, apiKey, secretKey) => {
      withDatabase((database) => database.prepare("update integrations set api_key = ?, secret_key = ? where id = ?").run(apiKey, secretKey, id));
    },
    command: { env: { DATA_DIR: dataDir } },
    dispose: () => rm(dataDir, { recursive: true, force: true }),
  };
}

async function openPostgresLocation(): Promise<EngineLocation> {
  const schema = uniqueSchemaName();
  const table = `${pg.escapeIdentifier(schema)}.integrations`;
  const query = async (text: string, values: unknown[]): Promise<RawRow[]> => {
    const client = new pg.Client({ connectionString: TEST_DATABASE_URL, connectionTimeoutMillis: 5_000 });
    await client.connect();
    try {
      return (await client.query(text, values)).rows as RawRow[];
    } finally {
      await client.end();
    }
  };

  const open = () => openStore({ databaseUrl: TEST_DATABASE_URL, schema, dataDir: "/nonexistent/unused", logger: silentLogger() });
  return {
    openPlain: async () => (await open()).store,
    openStore: open,
    description: describePostgresUrl(TEST_DATABASE_URL, schema),
    rawRow: async (id) => (await query(`select * from ${table} where id = $1`, [id]))[0],
    rawKeyChecks: () => query(`select * from ${pg.escapeIdentifier(schema)}.encryption_key_checks order by key_id`, []),
    writeRawSecrets: async (id, apiKey, secretKey) => {
      await query(`update ${table} set api_key = $1, secret_key = $2 where id = $3`, [apiKey, secretKey, id]);
    },
    command: { env: { DATABASE_URL: TEST_DATABASE_URL, DATABASE_SCHEMA: schema } },
    dispose: () => dropSchema(schema),
  };
}

/** SQLite in a temporary folder, and PostgreSQL in a schema of its own unless `SKIP_POSTGRES=1`. */
export const STORE_ENGINES: readonly StoreEngine[] = [
  { name: "SQLite", skip: false, open: openSqliteLocation },
  { name: "PostgreSQL", skip: SKIP_POSTGRES, open: openPostgresLocation },
];
