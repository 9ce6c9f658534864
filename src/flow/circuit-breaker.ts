/**
 * State of a circuit breaker. `half_open` is computed, not stored: an open
 * circuit becomes half-open once its cool-down has passed.
 */
export type CircuitState = "closed" | "open" | "half_open";

/** Effect of a finished send on the circuit breaker, as `classifySendOutcome` decides it. */
export type SendOutcome = "success" | "failure" | "ignored";

/** Service-wide settings of every integration's circuit breaker. */
export interface CircuitBreakerSettings {
  /** Consecutive failures that open the circuit, or 0 to turn the breaker off. */
  failureThreshold: number;
  /** Time an open circuit rejects every send before probes may pass, in milliseconds. */
  openMs: number;
  /** Probe sends let through at once while the circuit is half-open. */
  halfOpenProbes: number;
}

/** A send the breaker let through, to hand back to `record` with its outcome. */
export interface CircuitPermit {
  /** The breaker's generation at admission. Outcomes of older generations are ignored. */
  readonly generation: number;
  /** True when the send is a half-open probe. */
  readonly probe: boolean;
}

/** Reason the breaker rejects a send now. */
export type CircuitRejection =
  | { state: "open"; /** Milliseconds until probes may pass, at least 1. */ remainingMs: number }
  | { state: "half_open"; /** Every probe slot is taken by a send in flight. */ probesInFlight: number };

/** A change of state that a recorded outcome caused, for the log. */
export type CircuitTransition = "opened" | "closed" | "reopened";

/**
 * A circuit breaker for one gateway.
 *
 * Closed, it lets every send through and counts consecutive failures, and
 * it opens at `failureThreshold` of them. Open, it rejects every send for `openMs`.
 * Then it is half-open and lets up to `halfOpenProbes` sends through at
 * once as probes: the first probe that succeeds closes it, the first that
 * fails opens it again for another `openMs`.
 *
 * Each opening and closing starts a new generation, and outcomes of sends
 * admitted in an earlier generation are ignored. A send that started before
 * the circuit opened therefore cannot close it, and a failure that started
 * before a probe closed it does not count towards the next opening.
 */
export class CircuitBreaker {
  #consecutiveFailures = 0;
  /** Clock time at which the open circuit's cool-down ends, undefined while closed. */
  #coolDownEndsAtMs: number | undefined;
  #probesInFlight = 0;
  #generation = 0;

  constructor(private readonly settings: CircuitBreakerSettings) {}

  /** Returns the state at `nowMs`. */
  state(nowMs: number): CircuitState {
    if (this.#coolDownEndsAtMs === undefined) {
      return "closed";
    }
    return nowMs < this.#coolDownEndsAtMs ? "open" : "half_open";
  }

  /** Consecutive failures counted while closed, or the count that opened the circuit while open. */
  get consecutiveFailures(): number {
    return this.#consecutiveFailures;
  }

  /** Probe sends in flight while half-open. */
  get probesInFlight(): number {
    return this.#probesInFlight;
  }

  /** Returns true when a new breaker would behave the same: closed with no failure counted. */
  get atRest(): boolean {
    return this.#coolDownEndsAtMs === undefined && this.#consecutiveFailures === 0;
  }

  /** Returns why a send may not start now, or undefined when it may. Changes nothing. */
  rejection(nowMs: number): CircuitRejection | undefined {
    const state = this.state(nowMs);
    if (state === "open") {
      return { state, remainingMs: Math.max(1, Math.ceil(this.#coolDownEndsAtMs! - nowMs)) };
    }
    if (state === "half_open" && this.#probesInFlight >= this.settings.halfOpenProbes) {
      return { state, probesInFlight: this.#probesInFlight };
    }
    return undefined;
  }

  /** Ends an open circuit's cool-down at once, so that it is half-open and the next send is a probe. */
  endCoolDown(nowMs: number): void {
    if (this.state(nowMs) === "open") {
      this.#coolDownEndsAtMs = nowMs;
    }
  }

  /** Lets a send through. Call it only when `rejection` returned undefined just before. */
  admit(nowMs: number): CircuitPermit {
    const probe = this.state(nowMs) === "half_open";
    if (probe) {
      this.#probesInFlight += 1;
    }
    return { generation: this.#generation, probe };
  }

  /** Records the outcome of an admitted send and returns the change of state it caused, if any. */
  record(permit: CircuitPermit, outcome: SendOutcome, nowMs: number): CircuitTransition | undefined {
    if (permit.generation !== this.#generation) {
      return undefined;
    }

    if (permit.probe) {
      this.#probesInFlight -= 1;
      if (outcome === "success") {
        this.#close();
        return "closed";
      }
      if (outcome === "failure") {
        this.#open(nowMs);
        return "reopened";
      }
      return undefined;
    }

    if (outcome === "success") {
      this.#consecutiveFailures = 0;
    } else if (outcome === "failure") {
      this.#consecutiveFailures += 1;
      const threshold = this.settings.failureThreshold;
      if (threshold > 0 && this.#consecutiveFailures >= threshold) {
        this.#open(nowMs);
        return "opened";
      }
    }
    return undefined;
  }

  #open(nowMs: number): void {
    this.#coolDownEndsAtMs = nowMs + this.settings.openMs;
    this.#probesInFlight = 0;
    this.#generation += 1;
  }

  #close(): void {
    this.#coolDownEndsAtMs = undefined;
    this.#consecutiveFailures = 0;
    this.#probesInFlight = 0;
    this.#generation += 1;
  }
}
