import { Code, ConnectError } from "@connectrpc/connect";

import { GraceEndedError } from "../errors.js";
import { LightAbortController } from "../light-abort-controller.js";

/**
 * Time before the end of a send's budget within which a caller's abort
 * counts as its deadline: a tenth of the budget, at most 250 ms.
 */
export function deadlineSlackMs(budgetMs: number): number {
  return Math.min(250, budgetMs / 10);
}

/**
 * Reason a send's deadline signal fired: its time ran out, the caller
 * canceled, or the shutdown grace period ended while the send was running.
 */
export type DeadlineEnd = "timeout" | "canceled" | "shutdown";

/**
 * The time budget of one send, and the abort signal that ends its requests
 * when the budget runs out or the caller aborts.
 *
 * One timer and one listener per send replace `AbortSignal.timeout` and
 * `AbortSignal.any`, so that both are released as soon as the send settles
 * and the cause of an abort is known exactly. That cause is read here, once,
 * from the caller's abort reason, and the send's errors take it from
 * `ended`. Call `dispose` when the send settles.
 */
export class SendDeadline {
  /** Aborts the send's requests. */
  readonly signal: AbortSignal;

  private readonly controller = new LightAbortController();
  private readonly deadlineAt: number;
  private readonly timer: NodeJS.Timeout | undefined;
  private endedBy: DeadlineEnd | undefined;

  /**
   * @param requestId id of the call that the send serves, which the send's
   *   log lines carry; undefined for work shared by several calls.
   */
  constructor(
    readonly budgetMs: number,
    private readonly callerSignal: AbortSignal | undefined,
    readonly requestId?: string,
  ) {
    this.signal = this.controller.signal;
    this.deadlineAt = performance.now() + budgetMs;

    if (callerSignal?.aborted) {
      this.onCallerAbort();
      return;
    }
    if (budgetMs <= 0) {
      this.end("timeout");
      return;
    }
    this.timer = setTimeout(() => this.end("timeout"), budgetMs);
    callerSignal?.addEventListener("abort", this.onCallerAbort, { once: true });
  }

  /** Reason the signal fired, or `undefined` while it has not. */
  get ended(): DeadlineEnd | undefined {
    return this.endedBy;
  }

  /** Returns the milliseconds left in the budget, at least 1. */
  remainingMs(): number {
    return Math.max(1, Math.ceil(this.deadlineAt - performance.now()));
  }

  /** Stops the timer and the caller listener. */
  dispose(): void {
    clearTimeout(this.timer);
    this.callerSignal?.removeEventListener("abort", this.onCallerAbort);
  }

  private readonly onCallerAbort = (): void => {
    const reason = this.callerSignal?.reason;
    // Connect, the grpc-js services and an outer SendDeadline pass the
    // lifecycle's reason on unchanged, so the shutdown needs no guessing.
    if (reason instanceof GraceEndedError) {
      this.end("shutdown");
      return;
    }
    // A client whose own deadline timer fires resets the call a moment before
    // the server's timer would, so an abort that close to the budget's end is
    // the deadline passing, not a cancel.
    const atBudgetEnd = this.deadlineAt - performance.now() <= deadlineSlackMs(this.budgetMs);
    this.end(atBudgetEnd || isDeadlineReason(reason) ? "timeout" : "canceled");
  };

  private end(reason: DeadlineEnd): void {
    if (this.endedBy !== undefined) {
      return;
    }
    this.endedBy = reason;
    this.controller.abort(abortReason(reason));
  }
}

/**
 * Returns the reason the send's signal aborts with. A SendDeadline nested in
 * this one reads the same end back from it.
 */
function abortReason(end: DeadlineEnd): unknown {
  switch (end) {
    case "timeout":
      return new DOMException("send deadline exceeded", "TimeoutError");
    case "canceled":
      return new DOMException("send canceled by the caller", "AbortError");
    case "shutdown":
      return new GraceEndedError();
  }
}

/**
 * Tells whether a caller's abort reason is a passed deadline rather than a
 * cancel: a send deadline of an outer attempt (`TimeoutError`), or the
 * DEADLINE_EXCEEDED error with which the RPC server aborts a call whose
 * deadline passed.
 */
function isDeadlineReason(reason: unknown): boolean {
  if (reason instanceof DOMException) {
    return reason.name === "TimeoutError";
  }
  return reason instanceof ConnectError && reason.code === Code.DeadlineExceeded;
}
