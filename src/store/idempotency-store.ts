/**
 * State of an idempotency key:
 * - `pending`: a send holds the key (its `owner`) until it records an
 *   outcome or its lease expires.
 * - `done`: the outcome is final and every repeat of the request gets it.
 * - `retryable`: the last send ended without a final outcome (the gateway
 *   was unavailable, or the outcome is unknown). Sends that waited on it get
 *   that outcome; the next request with the key claims it again.
 */
export type IdempotencyState = "pending" | "done" | "retryable";

/** A stored idempotency key. */
export interface IdempotencyRecord {
  integrationId: string;
  key: string;
  /** Hash of the request that first used the key. */
  requestHash: string;
  state: IdempotencyState;
  /** Id of the send that owns or last owned the key. */
  owner: string;
  /** While `pending`: when the owner's claim lapses. */
  leaseExpireTime: Date;
  /** When the record may be purged. */
  expireTime: Date;
  /** The stored outcome as JSON text, null while `pending`. */
  outcome: string | null;
}

/** A send's request to hold a key. */
export interface IdempotencyClaim {
  integrationId: string;
  key: string;
  requestHash: string;
  /** Unique id of the claiming send. */
  owner: string;
  leaseExpireTime: Date;
  expireTime: Date;
  now: Date;
}

/** The outcome a key's owner records. */
export interface IdempotencyOutcome {
  state: "done" | "retryable";
  /** JSON text. */
  outcome: string;
  expireTime: Date;
  now: Date;
}

/**
 * Persistent idempotency keys, shared by every replica that uses the same
 * database. Each method is one statement, so concurrent sends (on one
 * replica or several) see each change whole.
 */
export interface IdempotencyStore {
  /**
   * Claims a key for `claim.owner` in one atomic statement: inserts a
   * `pending` record, or takes over a record that has expired, or a
   * `retryable` one with the same request hash. Returns true when the owner
   * now owns the key, false when another record blocks it (read it
   * with {@link get}).
   *
   * @throws NotFoundError when the integration no longer exists, for example
   *   because it was deleted while the send was starting.
   */
  claim(claim: IdempotencyClaim): Promise<boolean>;

  /** Reads a key's record; returns null when there is none. */
  get(integrationId: string, key: string): Promise<IdempotencyRecord | null>;

  /**
   * Records the outcome of a key that `owner` holds (`pending`), or held
   * when its lease was declared abandoned (`retryable`). Returns false, and
   * changes nothing, when another send has claimed the key since.
   */
  finish(integrationId: string, key: string, owner: string, outcome: IdempotencyOutcome): Promise<boolean>;

  /**
   * Marks a `pending` record of `owner` whose lease expired before `now` as
   * `retryable` with `outcome`, because its send recorded none (its process
   * ended, or storing the outcome failed). Returns false, and changes nothing, when the record is no longer
   * that pending claim.
   */
  abandon(integrationId: string, key: string, owner: string, outcome: string, now: Date): Promise<boolean>;

  /** Deletes the records that expired before `now`; returns how many. */
  purgeExpired(now: Date): Promise<number>;
}
