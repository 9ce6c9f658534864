/** A call in progress that a shutdown can end. */
export interface ShutdownAbortable {
  /** Aborts the call's signal with the shutdown's reason. */
  abortForShutdown(reason: unknown): void;
}

/**
 * Aborts the calls in progress when the shutdown signal aborts. One listener
 * on the signal and a set of calls cost less than a listener per call.
 */
export class ShutdownFanOut {
  private readonly calls = new Set<ShutdownAbortable>();

  constructor(readonly signal: AbortSignal | undefined) {
    signal?.addEventListener("abort", () => {
      for (const call of this.calls) {
        call.abortForShutdown(signal.reason);
      }
      this.calls.clear();
    }, { once: true });
  }

  /** Adds a call that the shutdown aborts, or aborts it now when the shutdown has begun. */
  add(call: ShutdownAbortable): void {
    if (this.signal?.aborted === true) {
      call.abortForShutdown(this.signal.reason);
    } else if (this.signal !== undefined) {
      this.calls.add(call);
    }
  }

  delete(call: ShutdownAbortable): void {
    this.calls.delete(call);
  }
}
