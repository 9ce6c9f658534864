import { setMaxListeners } from "node:events";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";

import { MIN_ATTEMPT_MS } from "../delivery/retry-policy.js";
import { MessageNotStartedError, StoppedBeforeRequestError } from "../errors.js";
import { SlotWaitAbortedError } from "../flow/concurrency-slots.js";
import { pacingDecision, type PacingDecision } from "./flow-pacing.js";

/** Share of the caller's time kept back at the end of a batch, so that its response still reaches the caller. */
export const RESPONSE_RESERVE_SHARE = 0.1;

/** Largest time kept back for the response as a share of the caller's time. */
export const MAX_RESPONSE_RESERVE_MS = 1_000;

/**
 * Time kept back per message for the response, when that comes to more
 * than the share. Building and encoding the results of 10,000 failed
 * messages took 150 to 350 ms on a 2-core machine, before the transfer and
 * the client's decoding, so this is an estimate with room to spare.
 */
export const RESPONSE_RESERVE_MS_PER_MESSAGE = 0.2;

/** Options of {@link runBatch}. */
export interface BatchRunOptions {
  /** Maximum messages in flight at once when the batch starts, at least 1. `MessageSendOptions.setConcurrency` changes it. */
  concurrency: number;
  /**
   * The call's signal: once it aborts, no further message starts. It also
   * aborts when the shutdown grace period ends, after `stopping` did.
   */
  signal: AbortSignal;
  /** Aborts when the service begins to shut down: then no further message starts either. */
  stopping?: AbortSignal;
  /** Milliseconds left before the caller's deadline, undefined when it set none. */
  deadlineMs: number | undefined;
  /**
   * Maximum wait in milliseconds that a gateway's 429 may request of the
   * batch (RETRY_AFTER_MAX_MS). After a longer one, no further message starts.
   */
  gatewayWaitMaxMs: number;
}

/** Limits of the send of one message. */
export interface MessageSendOptions {
  /** Milliseconds the send may take, undefined when the batch has no deadline. */
  deadlineMs: number | undefined;
  /**
   * Aborts once no further message of the batch may start: the caller
   * canceled, the service began to shut down, or too little of the deadline
   * is left. A send that waits for a flow-control slot stops waiting then.
   */
  startSignal: AbortSignal;
  /**
   * Changes the maximum of messages in flight at once, for a send that
   * found the integration's concurrency limit changed. A raised maximum
   * starts further messages at once. With a lowered one, messages in
   * flight finish, and no further message starts until fewer are in flight.
   */
  setConcurrency(concurrency: number): void;
  /**
   * Returns the milliseconds left of a wait that the gateway requested with
   * a 429, 0 when there is none. A send checks it right before its first
   * request, and a send that waited for a slot also before it takes a rate
   * token. Either throws {@link BatchPausedError} while it is above 0.
   */
  gatewayWaitLeftMs(): number;
  /**
   * Records the failure of the message's request as soon as it happens,
   * before the send gives its concurrency slot back. A gateway's 429 then
   * pauses the batch before a message that waits for that slot takes it.
   */
  reportFailure(error: unknown): void;
}

/**
 * Thrown by a message's send that found the batch paused by a gateway's
 * 429 before it sent anything, so that the message waits and starts again.
 */
export class BatchPausedError extends StoppedBeforeRequestError {
  override readonly name = "BatchPausedError";

  constructor() {
    super("the batch is paused for the gateway's Retry-After");
  }
}

/** Sends the message at `index`. */
export type MessageSend<T> = (index: number, options: MessageSendOptions) => Promise<T>;

/** Result of one message: the value its send returned, or the error it failed with. */
export type MessageOutcome<T> = { ok: true; value: T } | { ok: false; error: unknown };

/**
 * Sends `count` messages with at most `concurrency` in flight, and returns
 * one outcome per message, in index order. Messages start in index order.
 * A send may change `concurrency` for the messages that start after it.
 *
 * A send may wait for a slot of the integration's concurrency limit until
 * `MessageSendOptions.startSignal` aborts, and then throw
 * `SlotWaitAbortedError`. When flow control rejects a message for rate or a
 * half-open circuit (or for concurrency, from a send that does not wait),
 * the message waits for the rejection's retry delay and tries again. When
 * the deadline leaves no time for that, the rejection is its result. When
 * the circuit is open, or the send finds the integration deleted
 * (`NotFoundError`), that error is the result of the message and of every
 * message not yet started. When the gateway replies to a message with 429
 * and a `Retry-After`, that reply is the message's result, and no message starts
 * until the wait has passed. Messages that the wait or the deadline then
 * keeps from starting fail with `MessageNotStartedError`. A wait longer than
 * `gatewayWaitMaxMs` keeps every further message from starting. Messages
 * not started when the caller
 * cancels, when the deadline comes, or when the service begins to shut
 * down, fail with `MessageNotStartedError`.
 *
 * The batch ends {@link responseReserveMs} before the caller's deadline:
 * each send gets only the time left until then, so the results can still
 * be returned.
 */
export async function runBatch<T>(count: number, send: MessageSend<T>, options: BatchRunOptions): Promise<MessageOutcome<T>[]> {
  const run = new BatchRun(count, send, options);
  try {
    return await run.finished();
  } finally {
    run.dispose();
  }
}

/**
 * Returns the time kept back at the end of a batch of `count` messages for
 * its response. That is a tenth of the caller's time (at most 1 s), or 0.2 ms
 * per message when that is more, and never more than the whole deadline.
 */
export function responseReserveMs(deadlineMs: number, count: number): number {
  const time = Math.max(0, deadlineMs);
  const share = Math.min(MAX_RESPONSE_RESERVE_MS, time * RESPONSE_RESERVE_SHARE);
  return Math.min(time, Math.max(share, count * RESPONSE_RESERVE_MS_PER_MESSAGE));
}

/**
 * The state that the workers of one batch share. A worker sends one message
 * at a time, each time the next one in index order, so the batch has as
 * many messages in progress as it has workers.
 */
class BatchRun<T> {
  private readonly outcomes: MessageOutcome<T>[];
  /** Index of the next message to start. */
  private next = 0;
  private workers = 0;
  /** The number of workers wanted: the batch's current concurrency. */
  private concurrency = 1;
  /** Resolves the promise of `finished` once the last worker ends. */
  private resolveFinished: (outcomes: MessageOutcome<T>[]) => void = () => {};
  /** Clock time at which the batch stops, undefined without a deadline. */
  private readonly endsAt: number | undefined;
  /** The open-circuit rejection or NotFoundError that ends the batch, once one came. */
  private stopError: unknown;
  /** Clock time before which no message starts, because the gateway requested a wait until then. */
  private gatewayWaitEndsAt = 0;
  /** The wait that set `gatewayWaitEndsAt`, as the gateway requested it, in milliseconds. */
  private gatewayWaitMs = 0;
  /** True once the gateway requested a wait longer than `gatewayWaitMaxMs`, so no further message starts. */
  private gatewayHalted = false;
  /** Aborts once no further message may start, which ends waits for a slot or a retry delay. */
  private readonly startWindow = new AbortController();
  /** Aborts `startWindow` when less than MIN_ATTEMPT_MS is left before `endsAt`. */
  private readonly lastStartTimer: NodeJS.Timeout | undefined;
  /** True once `lastStartTimer` fired. The clock may not show it yet, because Node times timers from the event loop's cached time. */
  private lastStartPassed = false;
  /**
   * The first of the call's signal and `stopping` to abort. Once shutdown has
   * begun, the end of its grace period aborts the call's signal too, and the
   * messages not started still report the shutdown.
   */
  private firstAbort: "canceled" | "shutting_down" | undefined;

  constructor(
    private readonly count: number,
    private readonly send: MessageSend<T>,
    private readonly options: BatchRunOptions,
  ) {
    this.outcomes = new Array<MessageOutcome<T>>(count);
    const { deadlineMs, signal, stopping } = options;
    // Every waiting worker adds a listener to the start window, and every send in flight one to
    // the caller's signal (its deadline), so the default BATCH_CONCURRENCY of 16 already passes
    // the 10 listeners at which Node warns of a leak. Both counts are bounded by the concurrency.
    setMaxListeners(0, this.startWindow.signal, signal);
    this.endsAt = deadlineMs === undefined ? undefined : performance.now() + deadlineMs - responseReserveMs(deadlineMs, count);
    if (this.endsAt !== undefined) {
      this.lastStartTimer = setTimeout(() => {
        this.lastStartPassed = true;
        this.endStartWindow();
      }, this.endsAt - MIN_ATTEMPT_MS - performance.now());
    }
    if (signal.aborted) {
      this.onCallAborted();
    } else if (stopping?.aborted === true) {
      this.onStopping();
    }
    signal.addEventListener("abort", this.onCallAborted, { once: true });
    stopping?.addEventListener("abort", this.onStopping, { once: true });
  }

  /** Starts the workers and returns the outcomes once every message has one. */
  finished(): Promise<MessageOutcome<T>[]> {
    if (this.count === 0) {
      return Promise.resolve(this.outcomes);
    }
    const finished = new Promise<MessageOutcome<T>[]>((resolve) => {
      this.resolveFinished = resolve;
    });
    this.setConcurrency(this.options.concurrency);
    return finished;
  }

  /** Sets the number of workers wanted, and starts workers up to it while messages remain. Passed to every send. */
  private readonly setConcurrency = (concurrency: number): void => {
    this.concurrency = Math.max(1, concurrency);
    while (this.workers < this.concurrency && this.next < this.count) {
      this.workers += 1;
      void this.work();
    }
  };

  /** Sends messages one at a time until none is left, or until more workers run than the concurrency allows. */
  private async work(): Promise<void> {
    while (this.next < this.count && this.workers <= this.concurrency) {
      const index = this.next++;
      this.outcomes[index] = await this.sendMessage(index);
    }
    this.workers -= 1;
    if (this.workers === 0) {
      this.resolveFinished(this.outcomes);
    }
  }

  /** Stops the timer and the listeners. Call once every message has its outcome. */
  dispose(): void {
    clearTimeout(this.lastStartTimer);
    this.options.signal.removeEventListener("abort", this.onCallAborted);
    this.options.stopping?.removeEventListener("abort", this.onStopping);
  }

  /**
   * Sends one message. It waits and tries again while flow control rejects it
   * with a retry delay, and waits before it starts while the gateway's
   * Retry-After pauses the batch. Never rejects.
   */
  async sendMessage(index: number): Promise<MessageOutcome<T>> {
    for (;;) {
      const notStarted = this.notStartedError();
      if (notStarted !== undefined) {
        return { ok: false, error: notStarted };
      }
      const waitLeftMs = this.gatewayWaitLeftMs();
      if (waitLeftMs > 0) {
        if (!this.hasTimeFor(waitLeftMs + MIN_ATTEMPT_MS)) {
          return { ok: false, error: this.gatewayWaitError("and the call's deadline comes first. Send it again after the wait, with a longer deadline.") };
        }
        await this.wait(waitLeftMs);
        continue;
      }

      try {
        const sendOptions = {
          deadlineMs: this.remainingMs(),
          startSignal: this.startWindow.signal,
          setConcurrency: this.setConcurrency,
          gatewayWaitLeftMs: this.gatewayWaitLeftMs,
          reportFailure: this.reportFailure,
        };
        return { ok: true, value: await this.send(index, sendOptions) };
      } catch (error) {
        if (error instanceof BatchPausedError) {
          // Nothing was sent: the next turn of the loop waits out the pause.
          continue;
        }
        if (error instanceof SlotWaitAbortedError) {
          // The start window closed while the message waited for a slot, before it was sent.
          return { ok: false, error: this.notStartedError() ?? deadlineNotStartedError() };
        }
        const decision = pacingDecision(error, this.options.gatewayWaitMaxMs);
        if (decision.kind === "stop") {
          this.stopError ??= error;
          return { ok: false, error };
        }
        if (this.applyGatewayWait(decision)) {
          return { ok: false, error };
        }
        if (decision.kind === "final" || !this.hasTimeFor(decision.delayMs + MIN_ATTEMPT_MS)) {
          return { ok: false, error };
        }
        await this.wait(decision.delayMs);
      }
    }
  }

  /** Starts the wait that a gateway's 429 requested, when `decision` carries one, and returns whether it did. */
  private applyGatewayWait(decision: PacingDecision): boolean {
    if (decision.kind !== "pause" && decision.kind !== "halt") {
      return false;
    }
    const endsAt = performance.now() + decision.delayMs;
    if (endsAt > this.gatewayWaitEndsAt) {
      this.gatewayWaitEndsAt = endsAt;
      this.gatewayWaitMs = decision.delayMs;
    }
    if (decision.kind === "halt" && !this.gatewayHalted) {
      this.gatewayHalted = true;
      // Messages waiting for a slot or a retry delay stop waiting, and find the batch halted.
      this.endStartWindow();
    }
    return true;
  }

  /** Passed to every send: applies a gateway's requested wait as soon as a send fails. */
  private readonly reportFailure = (error: unknown): void => {
    this.applyGatewayWait(pacingDecision(error, this.options.gatewayWaitMaxMs));
  };

  /** Returns why no further message may start, or undefined while they may. */
  private notStartedError(): unknown {
    if (this.stopError !== undefined) {
      return this.stopError;
    }
    if (this.gatewayHalted) {
      return this.gatewayWaitError("longer than RETRY_AFTER_MAX_MS lets a batch wait. Send it again after the wait.");
    }
    if (this.lastStartPassed || !this.hasTimeFor(MIN_ATTEMPT_MS)) {
      return deadlineNotStartedError();
    }
    if (this.firstAbort === "canceled") {
      return new MessageNotStartedError("canceled", "This SMS was not sent: the caller canceled the call before it started.");
    }
    if (this.firstAbort === "shutting_down") {
      return new MessageNotStartedError(
        "shutting_down",
        "This SMS was not sent: the service began to shut down before it started. Send it again; another instance will take it.",
      );
    }
    return undefined;
  }

  /** Returns the error of a message that the gateway's requested wait keeps from starting, ending with `ending`. */
  private gatewayWaitError(ending: string): MessageNotStartedError {
    return new MessageNotStartedError(
      "gateway_rate_limited",
      `This SMS was not sent: the gateway replied HTTP 429 to a request for another message of this batch and asked to wait ` +
        `${Math.ceil(this.gatewayWaitMs / 1000)} s (Retry-After), ${ending}`,
      Math.max(0, Math.ceil(this.gatewayWaitEndsAt - performance.now())),
    );
  }

  private remainingMs(): number | undefined {
    return this.endsAt === undefined ? undefined : Math.floor(this.endsAt - performance.now());
  }

  private hasTimeFor(ms: number): boolean {
    const remaining = this.remainingMs();
    return remaining === undefined || remaining >= ms;
  }

  /** Waits `ms`, or less when the start window closes: the caller cancels, the service begins to shut down or the deadline nears. */
  private async wait(ms: number): Promise<void> {
    try {
      await sleep(ms, undefined, { signal: this.startWindow.signal });
    } catch {
      // Aborted: the next check reports why.
    }
  }

  private readonly gatewayWaitLeftMs = (): number => Math.max(0, this.gatewayWaitEndsAt - performance.now());

  private readonly endStartWindow = (): void => {
    this.startWindow.abort();
  };

  private readonly onCallAborted = (): void => {
    this.firstAbort ??= "canceled";
    this.endStartWindow();
  };

  private readonly onStopping = (): void => {
    this.firstAbort ??= "shutting_down";
    this.endStartWindow();
  };
}

function deadlineNotStartedError(): MessageNotStartedError {
  return new MessageNotStartedError(
    "deadline_exceeded",
    "This SMS was not sent: too little of the call's deadline was left to start it. " +
      "Send it again with a longer deadline, or in a smaller batch.",
  );
}
