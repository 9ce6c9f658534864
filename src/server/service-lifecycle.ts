import { setMaxListeners } from "node:events";

import { GraceEndedError } from "../errors.js";

/**
 * Whether the service is running or shutting down, and how many calls are in
 * progress. The call pipeline, health, readiness and long-lived streams read
 * it; the app's `close` moves it forward.
 */
export class ServiceLifecycle {
  private readonly stopping = new AbortController();
  private readonly forcing = new AbortController();
  private active = 0;

  constructor() {
    // Each batch in progress and each long-lived stream listens for shutdown, and each call in
    // progress for the end of the grace period, so their count has no fixed bound.
    setMaxListeners(0, this.stopping.signal, this.forcing.signal);
  }

  /** True from the moment shutdown begins. */
  get shuttingDown(): boolean {
    return this.stopping.signal.aborted;
  }

  /** Aborts when shutdown begins: long-lived streams (health watches, reflection) end on it. */
  get stoppingSignal(): AbortSignal {
    return this.stopping.signal;
  }

  /**
   * Aborts when the grace period ends with calls still in progress. Connect
   * and the grpc-js services abort every handler's signal with it, so those
   * calls end with an error code before their connections close.
   */
  get forceSignal(): AbortSignal {
    return this.forcing.signal;
  }

  /** Number of smsgateway.v1 calls in progress. */
  get callsInProgress(): number {
    return this.active;
  }

  /** Marks the start of shutdown; from now on new calls are rejected. */
  beginShutdown(): void {
    this.stopping.abort(new Error("the service is shutting down"));
  }

  /** Cancels the calls still in progress, once the grace period is over. */
  forceStop(): void {
    this.forcing.abort(new GraceEndedError());
  }

  /** Counts a call as in progress until the returned function is called; a second call of it has no effect. */
  callStarted(): () => void {
    this.active++;
    let ended = false;
    return () => {
      if (!ended) {
        ended = true;
        this.active--;
      }
    };
  }
}
