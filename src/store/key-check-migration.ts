import { sql, type Kysely } from "kysely";

import type { StoreEngine } from "./migrations.js";

/**
 * Applies migration `0006_encryption_key_checks`: one row per encryption
 * key id, holding a fixed text encrypted under the key that was first
 * configured with that id. A process that starts with another key under
 * the same id fails to decrypt it, and stops before it writes anything
 * under that key (see `src/security/encryption-key-check.ts`).
 */
export async function createKeyChecksTable(db: Kysely<unknown>, engine: StoreEngine): Promise<void> {
  let table = db.schema
    .createTable("encryption_key_checks")
    .addColumn("key_id", "text", (column) => {
      // Byte order on both engines, as for integrations.id.
      const ordered = engine === "postgres" ? column.modifyFront(sql`collate "C"`) : column;
      return ordered.primaryKey();
    })
    .addColumn("check_value", "text", (column) => column.notNull())
    .addColumn("create_time", "text", (column) => column.notNull());
  if (engine === "sqlite") {
    table = table.modifyEnd(sql`strict`);
  }
  await table.execute();
}
