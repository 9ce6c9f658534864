import type { Kysely } from "kysely";

import type { IdempotencyKeyRow, StoreDatabase } from "./database-schema.js";
import type {
  IdempotencyClaim,
  IdempotencyOutcome,
  IdempotencyRecord,
  IdempotencyState,
  IdempotencyStore,
} from "./idempotency-store.js";
import { toStoredTime } from "./integration-row.js";
import { StorageError } from "./storage-error.js";

const STATES: readonly IdempotencyState[] = ["pending", "done", "retryable"];

/**
 * The idempotency store over a Kysely instance, the same queries on SQLite
 * and PostgreSQL.
 *
 * A claim is one `INSERT … ON CONFLICT DO UPDATE … WHERE … RETURNING`: the
 * insert wins when no record exists, and the conditional update takes over
 * an expired or retryable record. Both databases run it atomically, so of
 * several concurrent claims exactly one returns a row. The instance does not
 * own `db`: the integration store that shares it closes it.
 */
export class KyselyIdempotencyStore implements IdempotencyStore {
  readonly #db: Kysely<StoreDatabase>;

  constructor(db: Kysely<StoreDatabase>) {
    this.#db = db;
  }

  async claim(claim: IdempotencyClaim): Promise<boolean> {
    const now = toStoredTime(claim.now);
    const row: IdempotencyKeyRow = {
      integration_id: claim.integrationId,
      idempotency_key: claim.key,
      request_hash: claim.requestHash,
      state: "pending",
      owner: claim.owner,
      lease_expire_time: toStoredTime(claim.leaseExpireTime),
      expire_time: toStoredTime(claim.expireTime),
      outcome: null,
      create_time: now,
      update_time: now,
    };

    const claimed = await this.#run("claim idempotency key", () =>
      this.#db
        .insertInto("idempotency_keys")
        .values(row)
        .onConflict((conflict) =>
          conflict
            .columns(["integration_id", "idempotency_key"])
            .doUpdateSet({
              request_hash: row.request_hash,
              state: row.state,
              owner: row.owner,
              lease_expire_time: row.lease_expire_time,
              expire_time: row.expire_time,
              outcome: null,
              create_time: now,
              update_time: now,
            })
            .where((eb) =>
              eb.or([
                eb("idempotency_keys.expire_time", "<=", now),
                eb.and([
                  eb("idempotency_keys.state", "=", "retryable"),
                  eb("idempotency_keys.request_hash", "=", row.request_hash),
                ]),
              ]),
            ),
        )
        .returning("owner")
        .executeTakeFirst(),
    );
    return claimed?.owner === claim.owner;
  }

  async get(integrationId: string, key: string): Promise<IdempotencyRecord | null> {
    const row = await this.#run("read idempotency key", () =>
      this.#db
        .selectFrom("idempotency_keys")
        .selectAll()
        .where("integration_id", "=", integrationId)
        .where("idempotency_key", "=", key)
        .executeTakeFirst(),
    );
    return row === undefined ? null : fromRow(row);
  }

  async finish(integrationId: string, key: string, owner: string, outcome: IdempotencyOutcome): Promise<boolean> {
    const result = await this.#run("record idempotency outcome", () =>
      this.#db
        .updateTable("idempotency_keys")
        .set({
          state: outcome.state,
          outcome: outcome.outcome,
          expire_time: toStoredTime(outcome.expireTime),
          update_time: toStoredTime(outcome.now),
        })
        .where("integration_id", "=", integrationId)
        .where("idempotency_key", "=", key)
        .where("owner", "=", owner)
        .where("state", "in", ["pending", "retryable"])
        .executeTakeFirst(),
    );
    return result.numUpdatedRows > 0n;
  }

  async abandon(integrationId: string, key: string, owner: string, outcome: string, now: Date): Promise<boolean> {
    const time = toStoredTime(now);
    const result = await this.#run("abandon idempotency key", () =>
      this.#db
        .updateTable("idempotency_keys")
        .set({ state: "retryable", outcome, update_time: time })
        .where("integration_id", "=", integrationId)
        .where("idempotency_key", "=", key)
        .where("owner", "=", owner)
        .where("state", "=", "pending")
        .where("lease_expire_time", "<=", time)
        .executeTakeFirst(),
    );
    return result.numUpdatedRows > 0n;
  }

  async purgeExpired(now: Date): Promise<number> {
    const result = await this.#run("purge idempotency keys", () =>
      this.#db.deleteFrom("idempotency_keys").where("expire_time", "<=", toStoredTime(now)).executeTakeFirst(),
    );
    return Number(result.numDeletedRows);
  }

  /** Runs one statement and replaces any driver error with a StorageError that is safe to log. */
  async #run<T>(operation: string, statement: () => Promise<T>): Promise<T> {
    try {
      return await statement();
    } catch (error) {
      throw new StorageError(operation, error);
    }
  }
}

function fromRow(row: IdempotencyKeyRow): IdempotencyRecord {
  const state = STATES.find((candidate) => candidate === row.state);
  if (state === undefined) {
    // The table's check constraint makes this unreachable.
    throw new Error(`idempotency key row has an unknown state "${row.state}"`);
  }
  return {
    integrationId: row.integration_id,
    key: row.idempotency_key,
    requestHash: row.request_hash,
    state,
    owner: row.owner,
    leaseExpireTime: new Date(row.lease_expire_time),
    expireTime: new Date(row.expire_time),
    outcome: row.outcome,
  };
}
