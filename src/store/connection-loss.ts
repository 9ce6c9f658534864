import type pg from "pg";

/** Outcome of a {@link ConnectionLoss.wait}. */
export type WaitOutcome =
  | { kind: "elapsed" }
  | { kind: "lost"; error: Error }
  /** One of the signals fired; `reason` is its abort reason. */
  | { kind: "aborted"; reason: unknown };

/**
 * Records the first failure or end of a pg client's connection, so that a
 * caller can wait for "time passed, the connection was lost, or a signal
 * fired" again and again.
 *
 * Each wait removes its timer and listeners when it settles. Racing a
 * promise that stays pending for the connection's lifetime instead would
 * keep one reaction per wait until the connection ends.
 */
export class ConnectionLoss {
  #error: Error | undefined;
  readonly #waiters = new Set<(error: Error) => void>();

  /** Starts watching; call it before `client.connect()`. */
  constructor(client: pg.Client) {
    // pg emits connection errors on the client, and an unhandled one would end the process.
    client.on("error", (error: Error) => this.#lose(error));
    client.once("end", () => this.#lose(new Error("the connection ended")));
  }

  /** The first failure, once the connection is lost. */
  get error(): Error | undefined {
    return this.#error;
  }

  /**
   * Waits `ms` milliseconds. Ends early when the connection is lost or was
   * lost before, or when one of `signals` fires or had fired.
   */
  wait(ms: number, signals: readonly AbortSignal[]): Promise<WaitOutcome> {
    if (this.#error !== undefined) {
      return Promise.resolve({ kind: "lost", error: this.#error });
    }
    const fired = signals.find((signal) => signal.aborted);
    if (fired !== undefined) {
      return Promise.resolve({ kind: "aborted", reason: fired.reason });
    }

    return new Promise((resolve) => {
      const finish = (outcome: WaitOutcome) => {
        clearTimeout(timer);
        this.#waiters.delete(onLoss);
        for (const signal of signals) {
          signal.removeEventListener("abort", onAbort);
        }
        resolve(outcome);
      };
      const onLoss = (error: Error) => finish({ kind: "lost", error });
      const onAbort = (event: Event) => finish({ kind: "aborted", reason: (event.target as AbortSignal).reason });
      const timer = setTimeout(() => finish({ kind: "elapsed" }), ms);

      this.#waiters.add(onLoss);
      for (const signal of signals) {
        signal.addEventListener("abort", onAbort, { once: true });
      }
    });
  }

  #lose(error: Error): void {
    if (this.#error !== undefined) {
      return;
    }
    this.#error = error;
    for (const waiter of [...this.#waiters]) {
      waiter(error);
    }
  }
}
