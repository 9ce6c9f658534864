import { sql, type Kysely, type RawBuilder, type SqlBool } from "kysely";

import { CIPHERTEXT_PREFIX } from "../security/secret-cipher.js";
import type { StoreDatabase } from "./database-schema.js";
import { toStoredTime } from "./integration-row.js";
import type { IntegrationSecrets, KeyCheckStore } from "./key-check-store.js";
import type { StoreEngine } from "./migrations.js";
import { runStatement } from "./storage-error.js";

type SecretColumn = "api_key" | "secret_key";

/**
 * The key check store over a Kysely instance. The key id of a secret is
 * read in SQL, so counting the key ids of every integration returns one row
 * per pair of key ids rather than one per integration. SQLite and
 * PostgreSQL name the function that finds a character differently, so that
 * expression depends on the engine. The instance does not own `db`: the
 * integration store that shares it closes it.
 */
export class KyselyKeyCheckStore implements KeyCheckStore {
  readonly #db: Kysely<StoreDatabase>;
  readonly #engine: StoreEngine;

  constructor(db: Kysely<StoreDatabase>, engine: StoreEngine) {
    this.#db = db;
    this.#engine = engine;
  }

  async readChecks(keyIds: readonly string[]): Promise<Map<string, string>> {
    if (keyIds.length === 0) {
      return new Map();
    }
    const rows = await runStatement("read key checks", () =>
      this.#db.selectFrom("encryption_key_checks").select(["key_id", "check_value"]).where("key_id", "in", keyIds).execute(),
    );
    return new Map(rows.map((row) => [row.key_id, row.check_value]));
  }

  async insertCheck(keyId: string, checkValue: string): Promise<boolean> {
    const inserted = await runStatement("insert key check", () =>
      this.#db
        .insertInto("encryption_key_checks")
        .values({ key_id: keyId, check_value: checkValue, create_time: toStoredTime(new Date()) })
        .onConflict((conflict) => conflict.column("key_id").doNothing())
        .returning("key_id")
        .executeTakeFirst(),
    );
    return inserted !== undefined;
  }

  async countIntegrationsByKeyId(): Promise<Map<string, number>> {
    // One row per pair of key ids found together, so one scan and no distinct count give exact numbers.
    const rows = await runStatement("count secrets by key id", () =>
      this.#db
        .selectFrom("integrations")
        .select((eb) => [
          this.#keyIdOf("api_key").as("api_key_id"),
          this.#keyIdOf("secret_key").as("secret_key_id"),
          eb.fn.countAll<number | string | bigint>().as("integrations"),
        ])
        .groupBy(["api_key_id", "secret_key_id"])
        .execute(),
    );

    const counts = new Map<string, number>();
    for (const row of rows) {
      // PostgreSQL returns count(*) as a bigint in text.
      const integrations = Number(row.integrations);
      for (const keyId of new Set([row.api_key_id, row.secret_key_id])) {
        if (keyId !== null) {
          counts.set(keyId, (counts.get(keyId) ?? 0) + integrations);
        }
      }
    }
    return counts;
  }

  async secretsUnderKey(keyId: string, limit: number): Promise<IntegrationSecrets[]> {
    const prefix = `${CIPHERTEXT_PREFIX}${keyId}:`;
    const startsWithPrefix = (column: SecretColumn) => sql<SqlBool>`substr(${sql.ref(column)}, 1, ${prefix.length}) = ${prefix}`;

    const rows = await runStatement("read secrets by key id", () =>
      this.#db
        .selectFrom("integrations")
        .select(["id", "api_key", "secret_key"])
        .where((eb) => eb.or([startsWithPrefix("api_key"), startsWithPrefix("secret_key")]))
        .orderBy("id")
        .limit(limit)
        .execute(),
    );
    return rows.map((row) => ({ integrationId: row.id, apiKey: row.api_key, secretKey: row.secret_key }));
  }

  /** Position of the `:` after the key id in the text that follows `v1:`, counted from 1; 0 when there is none. */
  #colonAfterKeyId(column: SecretColumn): RawBuilder<number> {
    const rest = sql`substr(${sql.ref(column)}, ${sql.lit(CIPHERTEXT_PREFIX.length + 1)})`;
    return this.#engine === "postgres" ? sql<number>`strpos(${rest}, ':')` : sql<number>`instr(${rest}, ':')`;
  }

  /** The key id of a `v1:` value; null for an empty value, legacy plain text, or a value without a key id. */
  #keyIdOf(column: SecretColumn): RawBuilder<string | null> {
    const encrypted = sql`substr(${sql.ref(column)}, 1, ${sql.lit(CIPHERTEXT_PREFIX.length)}) = ${sql.lit(CIPHERTEXT_PREFIX)}`;
    const colon = this.#colonAfterKeyId(column);
    return sql<string | null>`case when ${encrypted} and ${colon} > 1 then substr(${sql.ref(column)}, ${sql.lit(CIPHERTEXT_PREFIX.length + 1)}, ${colon} - 1) end`;
  }
}
