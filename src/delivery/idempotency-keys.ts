import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";

import type { Logger } from "pino";

import { copyWith } from "../copy-with.js";
import type { SendResult } from "../dispatch/dispatcher.js";
import type { DeadlineEnd, SendDeadline } from "../dispatch/send-deadline.js";
import { GatewayError, IdempotencyError, NotFoundError, StoppedBeforeRequestError } from "../errors.js";
import type { IdempotencyOutcome, IdempotencyStore } from "../store/idempotency-store.js";
import { encodeFailed, encodeNotSent, encodeSent, encodeUnknown, replayOutcome, stoppedSendMayHaveSent } from "./stored-outcome.js";

/**
 * Time a claim outlives its send's deadline. It covers writing the outcome
 * after the send and clock differences between replicas, which must stay
 * below it.
 */
const LEASE_GRACE_MS = 5_000;
/** First and longest pause between two reads of a key that another send holds. */
const FIRST_POLL_MS = 10;
const MAX_POLL_MS = 500;
/** Shortest time between two purges of expired keys by one process. */
const PURGE_INTERVAL_MS = 60_000;

/** The key of one send, and the hash of its request. */
export interface IdempotencyScope {
  integrationId: string;
  key: string;
  requestHash: string;
}

/** A send's result, and whether it was replayed from the store. */
export interface KeyedResult extends SendResult {
  /** True when an earlier send with the same key produced the result. */
  replayed: boolean;
}

/**
 * Result of a key lookup: its kept outcome (`found`), a claim of another
 * send that may still keep one (`claimed`), or neither (`none`).
 */
export type KeyLookup = { kind: "found"; result: KeyedResult } | { kind: "claimed" } | { kind: "none" };

/** Settings and collaborators of {@link IdempotencyKeys}. */
export interface IdempotencyKeysOptions {
  store: IdempotencyStore;
  /** How long an outcome is kept, in seconds (`IDEMPOTENCY_TTL_SECONDS`). */
  ttlSeconds: number;
  logger: Logger;
  /** Clock; tests replace it. */
  now?: () => Date;
}

/**
 * Coordinates the sends that share an idempotency key of one integration,
 * across every replica that shares the store, so that one of them sends and
 * the others get its outcome.
 *
 * A send claims its key atomically. The claimant sends and records the
 * outcome. A concurrent duplicate finds the key pending and polls until the
 * outcome is there. A repeat later gets the stored outcome. Only outcomes
 * that a retry cannot change are kept for repeats: an accepted SMS, or the
 * gateway's rejection of the SMS request (3xx, 4xx other than 408 and 429). After any other
 * failure the key is `retryable`: the duplicates that waited get that
 * failure, and the next request with the key sends again, with the same
 * `Idempotency-Key` header. A send that was canceled or stopped
 * (`StoppedBeforeRequestError`) before its request went out is no outcome
 * for its duplicates: one of them claims the key and sends instead.
 * Because the claim is atomic, it and a retry of the stopped send never
 * both send.
 *
 * When a claimant records no outcome, because its process ended or because
 * the store failed when it wrote the outcome, its lease expires. The first send that then finds the key marks it
 * `retryable` and reports IDEMPOTENCY_OUTCOME_UNKNOWN instead of sending,
 * because the gateway may have received the first request. The caller
 * decides, and a retry with the same key sends again.
 *
 * A store call that fails may still have committed, when only its reply
 * was lost. A claim that fails sends nothing, and the key is released in the
 * background in case the claim committed (see `releaseFailedClaim`). A failed
 * abandon reports the outcome as unknown, as a committed one would.
 */
export class IdempotencyKeys {
  private readonly store: IdempotencyStore;
  private readonly ttlMs: number;
  private readonly log: Logger;
  private readonly now: () => Date;
  private lastPurgeMs = Number.NEGATIVE_INFINITY;
  private purging: Promise<void> | undefined;
  /** Releases of failed claims still running, which {@link close} waits for. */
  private readonly releases = new Set<Promise<void>>();

  constructor(options: IdempotencyKeysOptions) {
    this.store = options.store;
    this.ttlMs = options.ttlSeconds * 1000;
    this.log = options.logger.child({ component: "idempotency" });
    this.now = options.now ?? (() => new Date());
  }

  /**
   * Returns the outcome of the request in `scope`: calls `send` when this
   * call claims the key, and otherwise waits for or replays the outcome of
   * the send that did.
   *
   * @throws IdempotencyError when the key belongs to another request
   *   (`key_reused`), another send still held it when `deadline` ended
   *   (`in_progress`), or the send that held it recorded no outcome
   *   (`outcome_unknown`).
   * @throws GatewayError of `send`, or the stored one of an earlier send.
   */
  async run(scope: IdempotencyScope, deadline: SendDeadline, send: () => Promise<SendResult>): Promise<KeyedResult> {
    const owner = randomUUID();
    let waitingOn: string | undefined;
    let pollMs = FIRST_POLL_MS;

    for (;;) {
      if (waitingOn === undefined && (await this.claim(scope, owner, deadline))) {
        return this.sendAsOwner(scope, owner, deadline, send);
      }

      const record = await this.store.get(scope.integrationId, scope.key);
      if (record === null) {
        // Purged since the claim failed: claim again.
        waitingOn = undefined;
        continue;
      }
      if (record.requestHash !== scope.requestHash) {
        throw keyReusedError(scope);
      }
      if (record.state === "retryable" && waitingOn !== undefined) {
        // A cancel, or a stop before the first request, belongs to the send waited on, not to this one.
        const mayHaveSent = stoppedSendMayHaveSent(record.outcome ?? "");
        if (mayHaveSent === false) {
          // Nothing reached the gateway, so this call sends as a later request would.
          waitingOn = undefined;
          continue;
        }
        if (mayHaveSent === true) {
          throw new IdempotencyError("outcome_unknown", canceledOwnerMessage(scope));
        }
      }
      if (record.state === "done" || (record.state === "retryable" && waitingOn !== undefined)) {
        return copyWith(replayOutcome(record.outcome ?? "", record.state), { replayed: true });
      }
      if (record.state === "retryable") {
        // Freed between the failed claim and the read: claim again.
        continue;
      }

      waitingOn = record.owner;
      const now = this.now();
      if (record.leaseExpireTime.getTime() <= now.getTime()) {
        if (deadline.signal.aborted) {
          // A caller that is gone would never learn of the unknown outcome, and the next request
          // with the key would then send again without a warning. That request abandons it instead.
          throw inProgressError(scope, deadline.ended);
        }
        const message = abandonedMessage(scope);
        try {
          await this.store.abandon(scope.integrationId, scope.key, record.owner, encodeUnknown(message), now);
        } catch (error) {
          // The abandon may have committed with its reply lost. The storage error would then invite a
          // retry, which claims the retryable key and sends again without the caller ever learning that
          // the first send may have reached the gateway. The outcome is unknown either way.
          this.log.warn(
            { requestId: deadline.requestId, integrationId: scope.integrationId, owner: record.owner, err: error },
            "marking an idempotency key whose lease expired without an outcome failed; reporting the outcome as unknown",
          );
          throw new IdempotencyError("outcome_unknown", message);
        }
        this.log.warn(
          { requestId: deadline.requestId, integrationId: scope.integrationId, owner: record.owner },
          "idempotency key lease expired without an outcome; reporting the outcome as unknown",
        );
        continue;
      }

      await this.pause(Math.min(pollMs, deadline.remainingMs()), deadline, scope);
      pollMs = Math.min(pollMs * 2, MAX_POLL_MS);
    }
  }

  /**
   * Looks up the stored outcome of the key as a replay, without sending or
   * waiting: for a send that flow control rejected, whose key may have sent
   * the SMS already. Returns `claimed` while another send has claimed the
   * key and its lease runs, and `none` when the key has neither a finished
   * outcome that is still kept nor such a claim.
   *
   * @throws GatewayError stored by an earlier send that failed.
   * @throws IdempotencyError when the key belongs to another request
   *   (`reused`), or its send recorded no outcome (`outcome_unknown`).
   */
  async storedOutcome(scope: IdempotencyScope): Promise<KeyLookup> {
    const record = await this.store.get(scope.integrationId, scope.key);
    if (record === null) {
      return { kind: "none" };
    }
    const nowMs = this.now().getTime();
    if (record.state === "pending") {
      // NOTE: a pending key whose lease ran out counts as none here, where a send would report its
      // outcome as unknown. Either way nothing is sent.
      return { kind: record.leaseExpireTime.getTime() > nowMs ? "claimed" : "none" };
    }
    if (record.state !== "done" || record.expireTime.getTime() <= nowMs) {
      return { kind: "none" };
    }
    if (record.requestHash !== scope.requestHash) {
      throw keyReusedError(scope);
    }
    return { kind: "found", result: copyWith(replayOutcome(record.outcome ?? "", record.state), { replayed: true }) };
  }

  /** Waits for a purge and the releases of failed claims that are running, so the store can close after them. */
  async close(): Promise<void> {
    await Promise.all([this.purging, ...this.releases]);
  }

  private async claim(scope: IdempotencyScope, owner: string, deadline: SendDeadline): Promise<boolean> {
    const now = this.now();
    const leaseExpireMs = now.getTime() + deadline.remainingMs() + LEASE_GRACE_MS;
    let claimed: boolean;
    try {
      claimed = await this.store.claim({
        ...scope,
        owner,
        leaseExpireTime: new Date(leaseExpireMs),
        // Counted from the end of the lease, because a row past its expiry may be claimed again or purged.
        // So a send that takes longer than the TTL keeps its key, and an abandoned claim keeps its unknown outcome.
        expireTime: new Date(leaseExpireMs + this.ttlMs),
        now,
      });
    } catch (error) {
      if (!(error instanceof NotFoundError)) {
        this.releaseFailedClaim(scope, owner, deadline);
      }
      throw error;
    }
    this.purgeNowAndThen(now);
    return claimed;
  }

  /**
   * Marks the key `retryable` with a `not_sent` outcome, in the background,
   * in case the failed claim committed and only its reply was lost (a query
   * timeout, a connection lost after the commit). This send sent nothing, so
   * a duplicate waiting on the key, or the caller's retry, may claim it at
   * once. Otherwise they would find it pending until the lease ends, and then
   * report its outcome as unknown. The statement changes nothing unless this
   * owner still owns the key.
   */
  private releaseFailedClaim(scope: IdempotencyScope, owner: string, deadline: SendDeadline): void {
    const now = this.now();
    const fields = { requestId: deadline.requestId, integrationId: scope.integrationId };
    const outcome = encodeNotSent(`the claim of key "${scope.key}" failed in the storage before anything was sent`);
    const release = this.store
      .finish(scope.integrationId, scope.key, owner, { state: "retryable", outcome, expireTime: new Date(now.getTime() + this.ttlMs), now })
      .then(
        (released) => {
          if (released) {
            this.log.info(fields, "released an idempotency key whose claim was stored although the claim call failed");
          }
        },
        (error: unknown) => {
          this.log.warn(
            { ...fields, err: error },
            "releasing the idempotency key of a failed claim failed too; if the claim was stored, the key stays pending until its lease ends",
          );
        },
      )
      .finally(() => {
        this.releases.delete(release);
      });
    this.releases.add(release);
  }

  private async sendAsOwner(
    scope: IdempotencyScope,
    owner: string,
    deadline: SendDeadline,
    send: () => Promise<SendResult>,
  ): Promise<KeyedResult> {
    let result: SendResult;
    try {
      result = await send();
    } catch (error) {
      await this.record(scope, owner, deadline, failureOutcome(error, scope));
      throw error;
    }
    await this.record(scope, owner, deadline, { state: "done", outcome: encodeSent(result) });
    return copyWith(result, { replayed: false });
  }

  /**
   * Stores the outcome of a claimed send. A store failure is logged, not
   * thrown, because the caller must learn the real outcome of the send: a
   * repeat then finds the key pending until its lease expires.
   */
  private async record(
    scope: IdempotencyScope,
    owner: string,
    deadline: SendDeadline,
    outcome: Pick<IdempotencyOutcome, "state" | "outcome">,
  ): Promise<void> {
    const now = this.now();
    const fields = { requestId: deadline.requestId, integrationId: scope.integrationId, state: outcome.state };
    try {
      const stored = await this.store.finish(scope.integrationId, scope.key, owner, {
        ...outcome,
        expireTime: new Date(now.getTime() + this.ttlMs),
        now,
      });
      if (!stored) {
        // The key's row changed owner after its lease ran out, or went with its deleted integration.
        this.log.warn(fields, "outcome of the idempotency key not stored: this send no longer held the key (lease ran out, or integration deleted)");
      }
    } catch (error) {
      this.log.error({ ...fields, err: error }, "storing the outcome of an idempotency key failed");
    }
  }

  /** Sleeps before the next read of a pending key, or fails when the deadline ends first. */
  private async pause(ms: number, deadline: SendDeadline, scope: IdempotencyScope): Promise<void> {
    try {
      await sleep(ms, undefined, { signal: deadline.signal });
    } catch {
      // On a cancel the caller is gone, so the error only reaches the log.
      throw inProgressError(scope, deadline.ended);
    }
  }

  /** Deletes expired keys at most once per interval, in the background of a claim. */
  private purgeNowAndThen(now: Date): void {
    if (this.purging !== undefined || now.getTime() - this.lastPurgeMs < PURGE_INTERVAL_MS) {
      return;
    }
    this.lastPurgeMs = now.getTime();
    this.purging = this.store
      .purgeExpired(now)
      .then(
        (count) => {
          if (count > 0) {
            this.log.info({ count }, "purged expired idempotency keys");
          }
        },
        (error: unknown) => {
          this.log.warn({ err: error }, "purging expired idempotency keys failed; the next claim after the interval tries again");
        },
      )
      .finally(() => {
        this.purging = undefined;
      });
  }
}

/**
 * Chooses how a failed send leaves its key. Only the gateway's reply to
 * the SMS request itself (a 3xx, or a 4xx other than 408 and 429, with no earlier
 * attempt that may have reached it) is final, because a retry may change
 * every other failure.
 */
function failureOutcome(error: unknown, scope: IdempotencyScope): Pick<IdempotencyOutcome, "state" | "outcome"> {
  if (error instanceof StoppedBeforeRequestError) {
    return { state: "retryable", outcome: encodeNotSent(error.message) };
  }
  if (!(error instanceof GatewayError)) {
    const problem =
      `the send that held key "${scope.key}" failed inside the service before it recorded an outcome. ` +
      "Retry with the same key.";
    return { state: "retryable", outcome: encodeUnknown(problem) };
  }
  const { info } = error;
  const final =
    info.stage === "send" &&
    info.outcomeUnknown !== true &&
    (info.failure === "rejected" || info.failure === "credentials_refused" || info.failure === "redirected");
  return { state: final ? "done" : "retryable", outcome: encodeFailed(error) };
}

function keyReusedError(scope: IdempotencyScope): IdempotencyError {
  return new IdempotencyError(
    "key_reused",
    `key "${scope.key}" was already used for a different request to integration "${scope.integrationId}". ` +
      "Use a new key for a new message, or repeat the first request unchanged.",
  );
}

function inProgressError(scope: IdempotencyScope, ended: DeadlineEnd | undefined): IdempotencyError {
  const when =
    ended === "shutdown"
      ? "the shutdown grace period of this service instance ended"
      : ended === "canceled"
        ? "this call was canceled"
        : "this call's time ran out (its deadline, or SEND_TIMEOUT_MS when that is shorter or it set none)";
  return new IdempotencyError(
    "in_progress",
    `another send with key "${scope.key}" was still in progress when ${when}. ` +
      "Retry later with the same key to get its outcome.",
  );
}

function canceledOwnerMessage(scope: IdempotencyScope): string {
  return (
    `the send that held key "${scope.key}" was canceled by its caller, or cut by a service shutdown, ` +
    "after its request went out, so the gateway may or may not have sent the SMS. " +
    "Check with the gateway, or retry with the same key to send again with the same Idempotency-Key header."
  );
}

function abandonedMessage(scope: IdempotencyScope): string {
  return (
    `the send that held key "${scope.key}" recorded no outcome. Either its service instance ended ` +
    "before it stored one, or storing the outcome failed, which that instance logged as an error. " +
    "Or the reply to its claim of the key was lost, and then it sent nothing. " +
    "So the gateway may or may not have sent the SMS, and only the response to the first call, if it arrived, has the outcome. " +
    "Check with the gateway, or retry with the same key to send again with the same Idempotency-Key header."
  );
}
