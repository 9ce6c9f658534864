import { Code, ConnectError } from "@connectrpc/connect";
import type { Logger } from "pino";

import type { KeyLookup } from "../delivery/delivery.js";
import { GatewayError, IdempotencyError } from "../errors.js";
import { TimeLimitError, untilAborted, withinTimeLimit } from "../until-aborted.js";

/**
 * Result of a lookup of an idempotency key's kept outcome: what the store
 * contains (see {@link KeyLookup}), or why the lookup got no result. `ended`
 * means the caller canceled the call or the service shut it down first,
 * `timed_out` that the call's deadline or the lookup's own time limit passed.
 */
export type KeptOutcome =
  | KeyLookup
  | { kind: "ended" }
  | { kind: "timed_out" }
  | { kind: "failed"; error: unknown };

/**
 * Runs a lookup of a key's kept outcome until the call's signal aborts or
 * `limitMs` passes, so that a silent database cannot keep the call running.
 * A query already sent goes on in the background until the database replies
 * or its connection fails.
 *
 * @throws the stored failure of the key (GatewayError), and the error of a
 *   key that belongs to another request or whose outcome is unknown
 *   (IdempotencyError).
 */
export async function lookUpKeptOutcome(lookup: () => Promise<KeyLookup>, signal: AbortSignal, limitMs: number): Promise<KeptOutcome> {
  try {
    return await withinTimeLimit(untilAborted(lookup(), signal), Math.max(0, limitMs));
  } catch (error) {
    if (error instanceof GatewayError || error instanceof IdempotencyError) {
      throw error;
    }
    if (error instanceof TimeLimitError || (signal.aborted && isDeadline(signal.reason))) {
      return { kind: "timed_out" };
    }
    return signal.aborted ? { kind: "ended" } : { kind: "failed", error };
  }
}

/** Returns whether a call's signal aborted because its deadline passed: both servers abort it with DEADLINE_EXCEEDED then. */
function isDeadline(reason: unknown): boolean {
  return reason instanceof ConnectError && reason.code === Code.DeadlineExceeded;
}

/** Logs the problem of one lookup that got no result: at info when the call ended, else at warn. */
export function logLookupProblem(log: Logger, integrationId: string, outcome: KeptOutcome, limitMs: number): void {
  if (outcome.kind === "ended") {
    log.info({ integrationId }, "the call was canceled while the kept outcome of its idempotency key was looked up");
  } else if (outcome.kind === "timed_out") {
    log.warn({ integrationId, limitMs: Math.max(0, limitMs) }, "looking up the kept outcome of an idempotency key took longer than the call allows; going on without it");
  } else if (outcome.kind === "failed") {
    log.warn({ integrationId, err: outcome.error }, "reading the kept outcome of an idempotency key failed; going on without it");
  }
}

/**
 * Counts the lookups of one batch that got no result, so that a batch of
 * thousands of messages logs one line instead of one per message.
 */
export class LookupProblems {
  ended = 0;
  timedOut = 0;
  failed = 0;
  /** Lookups that never started, because the batch's time for them had passed or the call ended. */
  notStarted = 0;
  #firstError: unknown;

  /** Counts a lookup's outcome when it got no result. */
  record(outcome: KeptOutcome): void {
    if (outcome.kind === "ended") {
      this.ended += 1;
    } else if (outcome.kind === "timed_out") {
      this.timedOut += 1;
    } else if (outcome.kind === "failed") {
      this.failed += 1;
      this.#firstError ??= outcome.error;
    }
  }

  /** Logs one line when any lookup got no result: at info when the call ended, else at warn. */
  log(log: Logger, integrationId: string): void {
    const { ended, timedOut, failed, notStarted } = this;
    if (ended + timedOut + failed + notStarted === 0) {
      return;
    }
    const fields = { integrationId, ended, timedOut, failed, notStarted, ...(this.#firstError === undefined ? {} : { err: this.#firstError }) };
    const message = "some lookups of idempotency keys' kept outcomes got no result; their messages went on without them";
    if (timedOut + failed + notStarted === 0) {
      log.info(fields, message);
    } else {
      log.warn(fields, message);
    }
  }
}
