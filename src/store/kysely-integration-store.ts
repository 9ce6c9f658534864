import { sql, type Kysely } from "kysely";

import type { IntegrationFields } from "../domain/integration.js";
import { AlreadyExistsError, NotFoundError, VersionConflictError } from "../errors.js";
import type { IntegrationRow, StoreDatabase } from "./database-schema.js";
import { newIntegrationId } from "./integration-id.js";
import { assertStorable, fromRow, toFieldColumns, toStoredTime } from "./integration-row.js";
import {
  INTEGRATION_RESOURCE,
  type IntegrationStore,
  type ListOptions,
  type ReadVersion,
  type SecretColumnsStore,
  type StoredIntegration,
  type StoredSecrets,
} from "./integration-store.js";
import { runStatement, StorageError } from "./storage-error.js";

/** Test seams of {@link KyselyIntegrationStore}; production uses the defaults. */
export interface KyselyIntegrationStoreOptions {
  /** Id generator for creates without an id; defaults to {@link newIntegrationId}. */
  newId?: () => string;
  /** Clock of `createTime` and `updateTime`; defaults to the system clock. */
  now?: () => Date;
}

/** No stored id contains U+0000, because the store never writes one. */
function canBeStoredId(id: string): boolean {
  return !id.includes("\u0000");
}

/**
 * The integration store over a Kysely instance, the same queries on SQLite
 * and PostgreSQL.
 *
 * Each method is one SQL statement. Create is `INSERT … ON CONFLICT (id) DO
 * NOTHING RETURNING`, so a taken id returns no row rather than an error that
 * differs between drivers. Update is one `UPDATE … RETURNING` that
 * increments `version` in SQL, so concurrent updates never lose an
 * increment. Driver errors reach callers as {@link StorageError}.
 */
export class KyselyIntegrationStore implements IntegrationStore, SecretColumnsStore {
  readonly #db: Kysely<StoreDatabase>;
  readonly #newId: () => string;
  readonly #now: () => Date;
  #closed = false;

  /** Takes ownership of `db`, already migrated and scoped to its schema: {@link close} destroys it. */
  constructor(db: Kysely<StoreDatabase>, options: KyselyIntegrationStoreOptions = {}) {
    this.#db = db;
    this.#newId = options.newId ?? newIntegrationId;
    this.#now = options.now ?? (() => new Date());
  }

  async create(fields: IntegrationFields, id?: string): Promise<StoredIntegration> {
    const rowId = id === undefined || id === "" ? this.#newId() : id;
    assertStorable(fields, rowId);

    const now = toStoredTime(this.#now());
    const row: IntegrationRow = {
      id: rowId,
      ...toFieldColumns(fields),
      create_time: now,
      update_time: now,
      version: 1,
    };

    const inserted = await runStatement("create", () =>
      this.#db
        .insertInto("integrations")
        .values(row)
        .onConflict((conflict) => conflict.column("id").doNothing())
        .returningAll()
        .executeTakeFirst(),
    );
    if (inserted === undefined) {
      throw new AlreadyExistsError(INTEGRATION_RESOURCE, rowId);
    }
    return fromRow(inserted);
  }

  async get(id: string): Promise<StoredIntegration | null> {
    if (!canBeStoredId(id)) {
      return null;
    }

    const row = await runStatement("get", () =>
      this.#db.selectFrom("integrations").selectAll().where("id", "=", id).executeTakeFirst(),
    );
    return row === undefined ? null : fromRow(row);
  }

  async update(id: string, fields: IntegrationFields, read?: ReadVersion): Promise<StoredIntegration> {
    if (!canBeStoredId(id)) {
      throw new NotFoundError(INTEGRATION_RESOURCE, id);
    }
    assertStorable(fields);

    const now = toStoredTime(this.#now());
    let updated: IntegrationRow | undefined;
    if (read === undefined) {
      updated = await this.#updateRow(id, fields, now, undefined);
    } else {
      // The row is matched by its version and creation time, in the service's own text form first.
      // SQL run by hand may have written the time in another form, which one more read finds.
      const written = toStoredTime(read.createTime);
      updated = await this.#updateRow(id, fields, now, { version: read.version, createTime: written });
      if (updated === undefined) {
        const stored = await this.#createTimeText(id, read);
        if (stored !== undefined && stored !== written) {
          updated = await this.#updateRow(id, fields, now, { version: read.version, createTime: stored });
        }
      }
    }
    if (updated === undefined) {
      if (read !== undefined && (await this.get(id)) !== null) {
        throw new VersionConflictError(INTEGRATION_RESOURCE, id);
      }
      throw new NotFoundError(INTEGRATION_RESOURCE, id);
    }
    return fromRow(updated);
  }

  /** Writes every field of the row, and with `match` only while the row has that version and stored creation time. */
  async #updateRow(
    id: string,
    fields: IntegrationFields,
    now: string,
    match: { version: number; createTime: string } | undefined,
  ): Promise<IntegrationRow | undefined> {
    return runStatement("update", () => {
      let query = this.#db
        .updateTable("integrations")
        .set((eb) => ({
          ...toFieldColumns(fields),
          update_time: now,
          version: eb("version", "+", 1),
        }))
        .where("id", "=", id);
      if (match !== undefined) {
        query = query.where("version", "=", match.version).where("create_time", "=", match.createTime);
      }
      return query.returningAll().executeTakeFirst();
    });
  }

  /** Returns the stored text of the row's creation time when the row still has `read`'s version and creation time. */
  async #createTimeText(id: string, read: ReadVersion): Promise<string | undefined> {
    const row = await runStatement("update", () =>
      this.#db.selectFrom("integrations").select("create_time").where("id", "=", id).where("version", "=", read.version).executeTakeFirst(),
    );
    if (row === undefined || new Date(row.create_time).getTime() !== read.createTime.getTime()) {
      return undefined;
    }
    return row.create_time;
  }

  async list(options: ListOptions): Promise<StoredIntegration[]> {
    const { limit } = options;
    if (!Number.isInteger(limit) || limit < 1) {
      throw new RangeError(`list limit must be a positive integer, got ${limit}`);
    }

    // PostgreSQL rejects U+0000 in a parameter. No stored id contains it, so
    // for every stored id, `id > afterId` is true exactly when `id > (afterId
    // cut before its first U+0000)` is.
    const afterId = options.afterId?.split("\u0000")[0] ?? "";

    const rows = await runStatement("list", () => {
      let query = this.#db.selectFrom("integrations").selectAll().orderBy("id").limit(limit);
      if (afterId !== "") {
        query = query.where("id", ">", afterId);
      }
      return query.execute();
    });
    return rows.map(fromRow);
  }

  async delete(id: string): Promise<boolean> {
    if (!canBeStoredId(id)) {
      return false;
    }

    const result = await runStatement("delete", () =>
      this.#db.deleteFrom("integrations").where("id", "=", id).executeTakeFirst(),
    );
    return result.numDeletedRows > 0n;
  }

  async replaceSecrets(id: string, expected: StoredSecrets, replacement: StoredSecrets): Promise<boolean> {
    if (!canBeStoredId(id)) {
      return false;
    }

    const result = await runStatement("replace secrets", () =>
      this.#db
        .updateTable("integrations")
        .set({ api_key: replacement.apiKey, secret_key: replacement.secretKey })
        .where("id", "=", id)
        .where("api_key", "=", expected.apiKey)
        .where("secret_key", "=", expected.secretKey)
        .executeTakeFirst(),
    );
    return result.numUpdatedRows > 0n;
  }

  async ping(): Promise<void> {
    await runStatement("ping", () => sql`select 1`.execute(this.#db));
  }

  async close(): Promise<void> {
    if (this.#closed) {
      return;
    }
    this.#closed = true;
    await runStatement("close", () => this.#db.destroy());
  }
}
