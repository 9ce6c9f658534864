import { sql, type Kysely } from "kysely";

import type { StoreEngine } from "./migrations.js";

/**
 * Applies migration `0003_idempotency`: the `idempotency_keys` table, and
 * the `token_lifetime_seconds` column of `integrations`.
 *
 * Rows of `idempotency_keys` go when their integration is deleted, so a new
 * integration with the same id never replays an old outcome. Times are ISO
 * text like the other tables, so text order is time order on both engines.
 */
export async function migrateIdempotency(db: Kysely<unknown>, engine: StoreEngine): Promise<void> {
  await db.schema.alterTable("integrations").addColumn("token_lifetime_seconds", "integer").execute();

  let table = db.schema
    .createTable("idempotency_keys")
    .addColumn("integration_id", "text", (column) => {
      // Same collation as integrations.id, which the foreign key references.
      const ordered = engine === "postgres" ? column.modifyFront(sql`collate "C"`) : column;
      return ordered.notNull();
    })
    .addColumn("idempotency_key", "text", (column) => column.notNull())
    .addColumn("request_hash", "text", (column) => column.notNull())
    .addColumn("state", "text", (column) =>
      column.notNull().check(sql`state in ('pending', 'done', 'retryable')`),
    )
    .addColumn("owner", "text", (column) => column.notNull())
    .addColumn("lease_expire_time", "text", (column) => column.notNull())
    .addColumn("expire_time", "text", (column) => column.notNull())
    .addColumn("outcome", "text")
    .addColumn("create_time", "text", (column) => column.notNull())
    .addColumn("update_time", "text", (column) => column.notNull())
    .addPrimaryKeyConstraint("idempotency_keys_pkey", ["integration_id", "idempotency_key"])
    .addForeignKeyConstraint("idempotency_keys_integration_fkey", ["integration_id"], "integrations", ["id"], (key) =>
      key.onDelete("cascade"),
    );
  if (engine === "sqlite") {
    table = table.modifyEnd(sql`strict`);
  }
  await table.execute();

  // The purge deletes by expiry time.
  await db.schema.createIndex("idempotency_keys_expire_time").on("idempotency_keys").column("expire_time").execute();
}
