import type { Kysely } from "kysely";

import type { IdempotencyKeyRow, StoreDatabase } from "./database-schema.js";
import type {
  IdempotencyClaim,
  IdempotencyOutcome,
  IdempotencyRecord,
  IdempotencyState,
  IdempotencyStore,
} from "./idempotency-store.js";
import { NotFoundError } from "../errors.js";
import { INTEGRATION_RESOURCE } from "./integration-store.js";
import { toStoredTime } from "./integration-row.js";
import { QueryTemplate } from "./query-template.js";
import { isForeignKeyViolation, runStatement, StorageError } from "./storage-error.js";

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
  readonly #claim: QueryTemplate<"integrationId" | "key" | "requestHash" | "owner" | "leaseExpireTime" | "expireTime" | "now", Pick<IdempotencyKeyRow, "owner">>;
  readonly #get: QueryTemplate<"integrationId" | "key", IdempotencyKeyRow>;
  readonly #finish: QueryTemplate<"integrationId" | "key" | "owner" | "state" | "outcome" | "expireTime" | "now">;
  readonly #abandon: QueryTemplate<"integrationId" | "key" | "owner" | "outcome" | "now">;

  constructor(db: Kysely<StoreDatabase>) {
    this.#db = db;
    // Every send with a key claims and finishes one, so these statements are compiled once.
    this.#claim = new QueryTemplate(db, (param) => {
      // A new claim writes these columns, whether it inserts the row or takes over an expired or retryable one.
      const claimed = {
        request_hash: param("requestHash"),
        state: "pending",
        owner: param("owner"),
        lease_expire_time: param("leaseExpireTime"),
        expire_time: param("expireTime"),
        outcome: null,
        create_time: param("now"),
        update_time: param("now"),
      } as const;
      return db
        .insertInto("idempotency_keys")
        .values({ integration_id: param("integrationId"), idempotency_key: param("key"), ...claimed })
        .onConflict((conflict) =>
          conflict
            .columns(["integration_id", "idempotency_key"])
            .doUpdateSet(claimed)
            .where((eb) =>
              eb.or([
                eb("idempotency_keys.expire_time", "<=", param("now")),
                eb.and([
                  eb("idempotency_keys.state", "=", "retryable"),
                  eb("idempotency_keys.request_hash", "=", param("requestHash")),
                ]),
              ]),
            ),
        )
        .returning("owner");
    });
    this.#get = new QueryTemplate(db, (param) =>
      db
        .selectFrom("idempotency_keys")
        .selectAll()
        .where("integration_id", "=", param("integrationId"))
        .where("idempotency_key", "=", param("key")),
    );
    this.#finish = new QueryTemplate(db, (param) =>
      db
        .updateTable("idempotency_keys")
        .set({ state: param("state"), outcome: param("outcome"), expire_time: param("expireTime"), update_time: param("now") })
        .where("integration_id", "=", param("integrationId"))
        .where("idempotency_key", "=", param("key"))
        .where("owner", "=", param("owner"))
        .where("state", "in", ["pending", "retryable"]),
    );
    this.#abandon = new QueryTemplate(db, (param) =>
      db
        .updateTable("idempotency_keys")
        .set({ state: "retryable", outcome: param("outcome"), update_time: param("now") })
        .where("integration_id", "=", param("integrationId"))
        .where("idempotency_key", "=", param("key"))
        .where("owner", "=", param("owner"))
        .where("state", "=", "pending")
        .where("lease_expire_time", "<=", param("now")),
    );
  }

  async claim(claim: IdempotencyClaim): Promise<boolean> {
    let result;
    try {
      result = await runStatement("claim idempotency key", () =>
        this.#claim.execute({
          integrationId: claim.integrationId,
          key: claim.key,
          requestHash: claim.requestHash,
          owner: claim.owner,
          leaseExpireTime: toStoredTime(claim.leaseExpireTime),
          expireTime: toStoredTime(claim.expireTime),
          now: toStoredTime(claim.now),
        }),
      );
    } catch (error) {
      // The key's row references its integration, so a send that raced a deletion fails here.
      if (error instanceof StorageError && isForeignKeyViolation(error.code)) {
        throw new NotFoundError(INTEGRATION_RESOURCE, claim.integrationId);
      }
      throw error;
    }
    return result.rows[0]?.owner === claim.owner;
  }

  async get(integrationId: string, key: string): Promise<IdempotencyRecord | null> {
    const result = await runStatement("read idempotency key", () => this.#get.execute({ integrationId, key }));
    const row = result.rows[0];
    return row === undefined ? null : fromRow(row);
  }

  async finish(integrationId: string, key: string, owner: string, outcome: IdempotencyOutcome): Promise<boolean> {
    const result = await runStatement("record idempotency outcome", () =>
      this.#finish.execute({
        integrationId,
        key,
        owner,
        state: outcome.state,
        outcome: outcome.outcome,
        expireTime: toStoredTime(outcome.expireTime),
        now: toStoredTime(outcome.now),
      }),
    );
    return (result.numAffectedRows ?? 0n) > 0n;
  }

  async abandon(integrationId: string, key: string, owner: string, outcome: string, now: Date): Promise<boolean> {
    const result = await runStatement("abandon idempotency key", () =>
      this.#abandon.execute({ integrationId, key, owner, outcome, now: toStoredTime(now) }),
    );
    return (result.numAffectedRows ?? 0n) > 0n;
  }

  async purgeExpired(now: Date): Promise<number> {
    const result = await runStatement("purge idempotency keys", () =>
      this.#db.deleteFrom("idempotency_keys").where("expire_time", "<=", toStoredTime(now)).executeTakeFirst(),
    );
    return Number(result.numDeletedRows);
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
