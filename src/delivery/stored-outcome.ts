import type { SendResult } from "../dispatch/dispatcher.js";
import { GatewayError, IdempotencyError, type GatewayErrorInfo } from "../errors.js";

/**
 * The outcome of a send as the idempotency store keeps it (JSON text):
 * - `sent`: the gateway accepted the SMS.
 * - `failed`: the send failed with this gateway error.
 * - `unknown`: the send recorded no outcome (its process ended, storing the
 *   outcome failed, or it failed in the service itself), so the gateway may
 *   have the SMS.
 * - `not_sent`: the send stopped before its first SMS request, so the
 *   gateway has nothing. It is stored only with a `retryable` key, and a
 *   duplicate that waited for the key claims it and sends.
 *
 * The `message` of `unknown` is the problem without the field name, because
 * each caller's error names the key by its own request path. Rows written
 * by earlier releases hold the whole message, so their errors name
 * `idempotency_key` twice.
 *
 * `v` versions the format, so that a later release can still read rows
 * written by this one.
 *
 * NOTE: a release older than the `not_sent` kind fails with an internal
 * error when it waits for a key that a newer replica left `not_sent`, which
 * only a rolling upgrade over a shared PostgreSQL database can cause.
 */
type StoredOutcome =
  | { v: 1; kind: "sent"; result: StoredResult }
  | { v: 1; kind: "failed"; message: string; info: GatewayErrorInfo }
  | { v: 1; kind: "unknown"; message: string }
  | { v: 1; kind: "not_sent"; message: string };

/** A `SendResult` with its date as ISO-8601 text. */
type StoredResult = Omit<SendResult, "date"> & { date: string };

/**
 * Notes that start the message of a replayed failure, by the state of its key.
 * Without one, a caller that fixed the request could not tell why a repeat
 * with the same key still fails without reaching the gateway.
 */
const REPLAY_NOTES = {
  done:
    "This call sent nothing and returns the stored outcome of an earlier call with the same idempotency key. " +
    "Every repeat with that key gets this outcome until the key expires, so a new key is needed to send again. " +
    "The earlier call failed with:",
  retryable:
    "This call waited for a concurrent call with the same idempotency key instead of sending, and returns its outcome. " +
    "The next request with that key sends again. The concurrent call failed with:",
} as const;

/** Encodes an accepted send. */
export function encodeSent(result: SendResult): string {
  const stored: StoredOutcome = { v: 1, kind: "sent", result: { ...result, date: result.date.toISOString() } };
  return JSON.stringify(stored);
}

/** Encodes a failed send, keeping the message and details that the caller saw. */
export function encodeFailed(error: GatewayError): string {
  const stored: StoredOutcome = { v: 1, kind: "failed", message: error.message, info: error.info };
  return JSON.stringify(stored);
}

/** Encodes a send whose outcome is unknown, with the problem that the errors of later callers describe. */
export function encodeUnknown(problem: string): string {
  const stored: StoredOutcome = { v: 1, kind: "unknown", message: problem };
  return JSON.stringify(stored);
}

/** Encodes a send that stopped before its first SMS request, with the reason it stopped. */
export function encodeNotSent(reason: string): string {
  const stored: StoredOutcome = { v: 1, kind: "not_sent", message: reason };
  return JSON.stringify(stored);
}

/**
 * Decodes a stored outcome: returns the stored result, or throws the stored
 * error again.
 *
 * @param state the state of the key: `done` when the outcome is kept for
 *   every repeat, `retryable` when it is the failure of a concurrent send
 *   that this call waited for, and the next request with the key sends again.
 * @throws GatewayError with the stored details of a failed send, and its
 *   message after a note that states it is a replay and what a repeat does.
 * @throws IdempotencyError (`outcome_unknown`) for a send without an outcome.
 * @throws Error when the text is not a stored outcome, or is `not_sent`,
 *   which a caller must check with {@link stoppedSendMayHaveSent} first.
 *   Either is a bug.
 */
export function replayOutcome(text: string, state: "done" | "retryable"): SendResult {
  // The service wrote the text itself, so only the format version is checked.
  const stored = JSON.parse(text) as StoredOutcome;
  if (stored.v !== 1) {
    throw new Error(`stored idempotency outcome has unsupported format version ${String(stored.v)}`);
  }
  switch (stored.kind) {
    case "sent":
      return { ...stored.result, date: new Date(stored.result.date) };
    case "failed":
      throw new GatewayError(`${REPLAY_NOTES[state]} ${stored.message}`, stored.info, { replayed: true });
    case "unknown":
      throw new IdempotencyError("outcome_unknown", stored.message);
    case "not_sent":
      throw new Error(`stored idempotency outcome "not_sent" has no result to replay (${stored.message})`);
  }
  throw new Error(`stored idempotency outcome has unknown kind ${String((stored as { kind?: unknown }).kind)}`);
}

/**
 * Returns whether the request of a send that stopped without a result of
 * its own may have reached the gateway. That is a send whose caller
 * canceled it, or whose service instance cut it at shutdown (a `canceled`
 * failure), or one that stopped before its first SMS request (`not_sent`,
 * always false). Returns undefined for any other outcome.
 */
export function stoppedSendMayHaveSent(text: string): boolean | undefined {
  if (text === "") {
    return undefined;
  }
  const stored = JSON.parse(text) as StoredOutcome;
  if (stored.v !== 1) {
    return undefined;
  }
  if (stored.kind === "not_sent") {
    return false;
  }
  if (stored.kind !== "failed" || stored.info.failure !== "canceled") {
    return undefined;
  }
  return stored.info.outcomeUnknown === true;
}
