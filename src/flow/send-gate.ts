import { performance } from "node:perf_hooks";

import type { Logger } from "pino";

import type { Integration } from "../domain/integration.js";
import {
  CircuitBreaker,
  type CircuitBreakerSettings,
  type CircuitPermit,
  type CircuitState,
  type SendOutcome,
} from "./circuit-breaker.js";
import { ConcurrencySlots, SlotWaitAbortedError } from "./concurrency-slots.js";
import { resolveSendLimits, type FlowDefaults, type SendLimits } from "./flow-limits.js";
import { circuitOpenError, concurrencyLimitError, rateLimitError } from "./flow-rejection.js";
import { classifySendOutcome, sentNoSmsRequest } from "./send-outcome.js";
import { RateTokens } from "./rate-tokens.js";
import { keptForRetryMs } from "./retry-delay.js";

/** Settings of a `SendGate`. The config module owns their defaults. */
export interface SendGateOptions {
  defaults: FlowDefaults;
  circuit: CircuitBreakerSettings;
  /** `SEND_TIMEOUT_MS`, to tell a gateway timeout from one a shorter caller deadline caused. */
  sendTimeoutMs: number;
  logger: Logger;
  /** Monotonic clock in milliseconds, `performance.now` unless a test drives time. */
  now?: () => number;
}

/** Per-send options of `SendGate.run`. */
export interface GateSendOptions<I extends Integration = Integration> {
  /** The caller's deadline in milliseconds, as the dispatcher gets it. */
  deadlineMs?: number;
  /** Id of the call that the send serves, which the gate's log lines about the send carry. */
  requestId?: string;
  /**
   * Makes a send that finds no concurrency slot it may take wait for one,
   * in FIFO order, instead of failing with CONCURRENCY_LIMIT. Such a send
   * never takes the last free slot of a limit above 1. The wait ends
   * with `SlotWaitAbortedError` when this signal aborts. Unset for sends
   * whose caller expects fast feedback.
   */
  waitForSlot?: AbortSignal;
  /**
   * Reads the integration again once a send that waited has its slot, so
   * that the send checks the rate limit and goes out with the integration
   * as stored then. What it throws fails the send, and its slot is given back.
   */
  reread?: () => Promise<I>;
}

/**
 * Sends the SMS once the gate admitted it. `deadlineMs` is the caller's
 * deadline less the time the send waited for a slot, and `integration` the
 * one to send through: the one given to `run`, or the one `reread` returned.
 */
export type GatedSend<T, I extends Integration = Integration> = (deadlineMs: number | undefined, integration: I) => Promise<T>;

/** Flow-control state of one integration, for metrics and diagnostics. */
export interface IntegrationFlowState {
  integrationId: string;
  circuit: CircuitState;
  /** Consecutive failures counted while closed, or the count that opened the circuit while open. */
  consecutiveFailures: number;
  /** Milliseconds until probes may pass, 0 unless the circuit is open. */
  circuitOpenRemainingMs: number;
  /** Sends in flight, probes included. */
  inFlight: number;
  /** Batch sends waiting for a concurrency slot. */
  waiting: number;
}

/** An integration that has been idle this long, with nothing pending, is forgotten. */
export const IDLE_ENTRY_MS = 60_000;

/** Time between sweeps for idle entries, because a sweep walks every entry. */
const SWEEP_INTERVAL_MS = 10_000;

/** Retry delay for CONCURRENCY_LIMIT before any send of the integration has finished. */
const INITIAL_SEND_ESTIMATE_MS = 100;

/** Smallest retry delay given for a slot to free up. */
const MIN_SLOT_DELAY_MS = 10;

/** Weight of the newest send in the moving average of send durations. */
const DURATION_WEIGHT = 0.2;

/** Flow-control state of one integration. */
interface GateEntry {
  slots: ConcurrencySlots;
  /** Undefined while the integration has no rate limit. */
  tokens: RateTokens | undefined;
  breaker: CircuitBreaker;
  /** Clock time of the last admission or completion. */
  lastActiveMs: number;
  /** Exponential moving average of send durations, undefined before the first one finishes. */
  averageSendMs: number | undefined;
  /** The gateway settings of the send that last opened the circuit, from {@link gatewaySettings}. */
  openedWith?: string;
}

/**
 * Applies each integration's concurrency limit, rate limit and circuit
 * breaker around its sends, so that an overloaded or failing gateway is
 * protected and callers fail fast instead of queueing.
 *
 * A rejected send throws `FlowLimitError` before any request is made. The
 * checks run in this order and the first that rejects wins: circuit
 * breaker, concurrency, rate. Nothing is taken unless every check passes.
 * A send with `waitForSlot` (a message of a batch) waits in a FIFO queue
 * instead of failing the concurrency check. Once it has a slot, the
 * circuit is checked again, because it may have opened meanwhile, and then
 * the rate. `ConcurrencySlots` describes the queue and the slot that queued
 * sends leave to direct sends, and `RateTokens` the share of rate-limit
 * tokens direct sends get while queued sends wait for a token. A send
 * that fails before its first SMS request, such as a batch message that a
 * gateway's Retry-After paused right then, gives its token back.
 *
 * State is per process and per integration id, in a map. An entry is
 * dropped once it has been idle for `IDLE_ENTRY_MS` with no send in flight
 * or waiting, no open cool-down and a full token bucket. Dropping it loses
 * at most a failure count below the threshold or a half-open state, so the
 * integration starts over with a closed circuit. The map therefore contains
 * only integrations active in the last minute, or with a send in flight or
 * waiting, an open circuit or a token bucket still refilling. Limits are read from the
 * integration on every send, so a change applies to the next one. Sends
 * that wait for a slot see a change through `applyLimits` and `endWaits`.
 */
export class SendGate {
  readonly #entries = new Map<string, GateEntry>();
  readonly #defaults: FlowDefaults;
  readonly #circuit: CircuitBreakerSettings;
  readonly #sendTimeoutMs: number;
  readonly #log: Logger;
  readonly #now: () => number;
  #lastSweepMs: number;

  constructor(options: SendGateOptions) {
    this.#defaults = options.defaults;
    this.#circuit = options.circuit;
    this.#sendTimeoutMs = options.sendTimeoutMs;
    this.#log = options.logger.child({ component: "send-gate" });
    this.#now = options.now ?? (() => performance.now());
    this.#lastSweepMs = this.#now();
  }

  /**
   * Runs `send` for `integration` if its limits and circuit allow, and
   * records the outcome. When `send` fails before it wrote an SMS request
   * (`sentNoSmsRequest`), its rate-limit token is given back.
   *
   * @throws FlowLimitError when a limit or the circuit rejects the send.
   *   `send` is not called then.
   * @throws SlotWaitAbortedError when `options.waitForSlot` aborts while the
   *   send waits for a slot. `send` is not called then.
   * @throws the error given to `endWaits`, or thrown by `options.reread`.
   *   `send` is not called then.
   * @throws whatever `send` throws.
   */
  async run<T, I extends Integration>(integration: I, options: GateSendOptions<I>, send: GatedSend<T, I>): Promise<T> {
    const arrivalMs = this.#now();
    this.#sweepIfDue(arrivalMs);

    const limits = resolveSendLimits(integration, this.#defaults);
    const entry = this.#entryFor(integration.id, limits, arrivalMs);
    entry.slots.setLimit(limits.maxConcurrentSends);
    this.#probeChangedGateway(integration, entry, arrivalMs, options.requestId);
    const { waitForSlot, requestId } = options;
    let permit: CircuitPermit;
    let startMs = arrivalMs;
    let current = integration;
    // The tokens that admission took one from, undefined without a rate limit.
    let tokens: RateTokens | undefined;
    if (waitForSlot === undefined) {
      permit = this.#admit(integration.id, entry, limits, arrivalMs, requestId);
      tokens = entry.tokens;
    } else {
      ({ permit, startMs, integration: current, tokens } = await this.#admitInTurn(integration, entry, limits, options, waitForSlot));
    }

    const deadlineMs = options.deadlineMs === undefined ? undefined : Math.floor(options.deadlineMs - (startMs - arrivalMs));
    // A NaN deadline compares false, so it counts as the full send time, as in the dispatcher.
    const deadlineCutShort = deadlineMs !== undefined && deadlineMs < this.#sendTimeoutMs;
    let outcome: SendOutcome = "ignored";
    try {
      const result = await send(deadlineMs, current);
      outcome = isReplay(result) ? "ignored" : "success";
      return result;
    } catch (error) {
      outcome = isReplay(error) ? "ignored" : classifySendOutcome(error, deadlineCutShort);
      if (tokens !== undefined && sentNoSmsRequest(error)) {
        // This catch runs once per admission, so a token goes back at most once.
        tokens.giveBack(this.#now());
      }
      throw error;
    } finally {
      this.#finish(current, entry, permit, outcome, startMs, options.requestId);
    }
  }

  /** SEND_TIMEOUT_MS: the longest a send may take, which also bounds what a send waits for besides the gateway. */
  get sendTimeoutMs(): number {
    return this.#sendTimeoutMs;
  }

  /** Returns the limits that apply to the integration's next send: its own fields, or the service defaults where they are 0. */
  limitsFor(integration: Integration): SendLimits {
    return resolveSendLimits(integration, this.#defaults);
  }

  /**
   * Applies the integration's current limits to the sends of it that wait
   * for a slot: a raised concurrency limit hands them the new slots at once.
   * Does nothing unless the gate keeps state for the integration.
   */
  applyLimits(integration: Integration): void {
    const entry = this.#entries.get(integration.id);
    if (entry === undefined) {
      return;
    }
    const limits = resolveSendLimits(integration, this.#defaults);
    entry.slots.setLimit(limits.maxConcurrentSends);
    entry.tokens = this.#tokensFor(entry, limits.maxSendsPerSecond, this.#now());
  }

  /** Ends the wait of every send of the integration that waits for a slot: each fails with `error`, and none takes a slot. */
  endWaits(integrationId: string, error: Error): void {
    this.#entries.get(integrationId)?.slots.endWaits(error);
  }

  /** Returns true when the integration's circuit breaker is open or half-open, so that sends may be rejected or wait for a probe. */
  circuitNotClosed(integrationId: string): boolean {
    const entry = this.#entries.get(integrationId);
    return entry !== undefined && entry.breaker.state(this.#now()) !== "closed";
  }

  /** Returns the number of sends of the integration that wait for a slot. */
  waitingFor(integrationId: string): number {
    return this.#entries.get(integrationId)?.slots.waiting ?? 0;
  }

  /** Returns the flow-control state of each integration in the map. An integration not listed is closed and idle. */
  flowStates(): IntegrationFlowState[] {
    const nowMs = this.#now();
    return [...this.#entries].map(([integrationId, entry]) => {
      const rejection = entry.breaker.rejection(nowMs);
      return {
        integrationId,
        circuit: entry.breaker.state(nowMs),
        consecutiveFailures: entry.breaker.consecutiveFailures,
        circuitOpenRemainingMs: rejection?.state === "open" ? rejection.remainingMs : 0,
        inFlight: entry.slots.inFlight,
        waiting: entry.slots.waiting,
      };
    });
  }

  /** Number of integrations the gate keeps state for. */
  get size(): number {
    return this.#entries.size;
  }

  #entryFor(integrationId: string, limits: SendLimits, nowMs: number): GateEntry {
    let entry = this.#entries.get(integrationId);
    if (entry === undefined) {
      const created: GateEntry = {
        slots: new ConcurrencySlots(limits.maxConcurrentSends),
        tokens: undefined,
        breaker: new CircuitBreaker(this.#circuit),
        lastActiveMs: nowMs,
        averageSendMs: undefined,
      };
      this.#entries.set(integrationId, created);
      entry = created;
    }
    return entry;
  }

  /** Checks every limit for a send that does not wait, then takes the slot, the token and the circuit permit together. */
  #admit(integrationId: string, entry: GateEntry, limits: SendLimits, nowMs: number, requestId: string | undefined): CircuitPermit {
    this.#checkCircuit(integrationId, entry, nowMs);
    if (!entry.slots.hasSlotForDirectSend()) {
      // A slot kept for this send must outlast the retry delay of its rejection, in either form.
      const retryDelayMs = this.#slotDelayMs(entry);
      entry.slots.noteRejectedDirectSend(keptForRetryMs(retryDelayMs));
      throw concurrencyLimitError(integrationId, limits, retryDelayMs);
    }
    this.#takeToken(integrationId, entry, limits, nowMs, "direct");

    entry.slots.takeForDirectSend();
    return this.#startSend(integrationId, entry, nowMs, requestId);
  }

  /**
   * Admits a send that may wait for a slot: checks the circuit, takes a slot
   * in FIFO order, waiting while none is free, then checks the circuit again
   * and takes a token. A send that waited reads its integration again first,
   * with `options.reread`. A check that fails after the slot was taken gives
   * it back. Returns the permit, the clock time at which the send starts, and
   * the integration to send through.
   */
  async #admitInTurn<I extends Integration>(
    integration: I,
    entry: GateEntry,
    limits: SendLimits,
    options: GateSendOptions<I>,
    waitForSlot: AbortSignal,
  ): Promise<{ permit: CircuitPermit; startMs: number; integration: I; tokens: RateTokens | undefined }> {
    const integrationId = integration.id;
    this.#checkCircuit(integrationId, entry, this.#now());
    const waited = !entry.slots.takeInTurn();
    if (waited) {
      await entry.slots.waitForSlot(waitForSlot);
    }

    let current = integration;
    let nowMs = this.#now();
    try {
      if (waited) {
        if (options.reread !== undefined) {
          current = await options.reread();
          limits = resolveSendLimits(current, this.#defaults);
          entry.slots.setLimit(limits.maxConcurrentSends);
          nowMs = this.#now();
        }
        // The signal may abort after the slot was handed over and before this send resumed.
        if (waitForSlot.aborted) {
          throw new SlotWaitAbortedError();
        }
        // The circuit may have opened while the send waited, and the integration changed.
        this.#probeChangedGateway(current, entry, nowMs, options.requestId);
        this.#checkCircuit(integrationId, entry, nowMs);
      }
      this.#takeToken(integrationId, entry, limits, nowMs, "queued");
    } catch (error) {
      entry.slots.release();
      throw error;
    }
    const permit = this.#startSend(integrationId, entry, nowMs, options.requestId);
    return { permit, startMs: nowMs, integration: current, tokens: entry.tokens };
  }

  /**
   * Ends the cool-down of an open circuit when the integration's gateway
   * settings differ from those of the send that opened it, such as a
   * corrected base URL or a new API key. The next send is then a probe of
   * the new settings, instead of waiting out a cool-down that the old ones caused.
   */
  #probeChangedGateway(integration: Integration, entry: GateEntry, nowMs: number, requestId: string | undefined): void {
    if (entry.openedWith === undefined || entry.breaker.state(nowMs) !== "open" || entry.openedWith === gatewaySettings(integration)) {
      return;
    }
    entry.breaker.endCoolDown(nowMs);
    entry.openedWith = undefined;
    this.#log.info({ requestId, integrationId: integration.id }, "circuit half-open early because the integration's gateway settings changed");
  }

  #checkCircuit(integrationId: string, entry: GateEntry, nowMs: number): void {
    const rejection = entry.breaker.rejection(nowMs);
    if (rejection !== undefined) {
      throw circuitOpenError(integrationId, rejection, this.#circuit.failureThreshold, this.#slotDelayMs(entry));
    }
  }

  /** Takes a rate-limit token, for a direct send or a queued one, which `RateTokens` treat differently. */
  #takeToken(integrationId: string, entry: GateEntry, limits: SendLimits, nowMs: number, sender: "direct" | "queued"): void {
    const tokens = this.#tokensFor(entry, limits.maxSendsPerSecond, nowMs);
    entry.tokens = tokens;
    let waitMs = 0;
    if (tokens !== undefined) {
      waitMs = sender === "direct" ? tokens.tryTakeForDirectSend(nowMs) : tokens.tryTakeForQueuedSend(nowMs);
    }
    if (waitMs > 0) {
      throw rateLimitError(integrationId, limits, waitMs);
    }
  }

  /** Marks the entry active and takes the circuit permit of a send that has its slot and token. */
  #startSend(integrationId: string, entry: GateEntry, nowMs: number, requestId: string | undefined): CircuitPermit {
    entry.lastActiveMs = nowMs;
    const permit = entry.breaker.admit(nowMs);
    if (permit.probe) {
      this.#log.info({ requestId, integrationId, probesInFlight: entry.breaker.probesInFlight }, "probe send let through the half-open circuit");
    }
    return permit;
  }

  /** Returns the entry's rate-limit tokens for the current rate, created or changed as needed. */
  #tokensFor(entry: GateEntry, ratePerSecond: number, nowMs: number): RateTokens | undefined {
    if (ratePerSecond === 0) {
      return undefined;
    }
    if (entry.tokens === undefined) {
      return new RateTokens(ratePerSecond, nowMs);
    }
    entry.tokens.setRate(ratePerSecond);
    return entry.tokens;
  }

  #finish(
    integration: Integration,
    entry: GateEntry,
    permit: CircuitPermit,
    outcome: SendOutcome,
    startMs: number,
    requestId: string | undefined,
  ): void {
    const nowMs = this.#now();
    entry.lastActiveMs = nowMs;
    const durationMs = nowMs - startMs;
    entry.averageSendMs =
      entry.averageSendMs === undefined
        ? durationMs
        : entry.averageSendMs + DURATION_WEIGHT * (durationMs - entry.averageSendMs);

    const transition = entry.breaker.record(permit, outcome, nowMs);
    entry.slots.release();
    if (transition === "opened" || transition === "reopened") {
      entry.openedWith = gatewaySettings(integration);
    }
    const integrationId = integration.id;
    const fields = { requestId, integrationId, consecutiveFailures: entry.breaker.consecutiveFailures, openMs: this.#circuit.openMs };
    if (transition === "opened") {
      this.#log.warn(fields, "circuit opened, so sends fail fast with UNAVAILABLE until the cool-down ends");
    } else if (transition === "reopened") {
      this.#log.warn(fields, "circuit opened again because a probe send failed");
    } else if (transition === "closed") {
      this.#log.info({ requestId, integrationId }, "circuit closed because a probe send succeeded");
    }
  }

  /** Estimates when a send in flight finishes: the recent average send time, within [10 ms, SEND_TIMEOUT_MS]. */
  #slotDelayMs(entry: GateEntry): number {
    const estimateMs = entry.averageSendMs ?? INITIAL_SEND_ESTIMATE_MS;
    return Math.ceil(Math.min(this.#sendTimeoutMs, Math.max(MIN_SLOT_DELAY_MS, estimateMs)));
  }

  /** Drops entries that are idle with nothing pending, at most once per sweep interval. */
  #sweepIfDue(nowMs: number): void {
    if (nowMs - this.#lastSweepMs < SWEEP_INTERVAL_MS) {
      return;
    }
    this.#lastSweepMs = nowMs;

    for (const [integrationId, entry] of this.#entries) {
      const idle = entry.slots.idle && nowMs - entry.lastActiveMs >= IDLE_ENTRY_MS;
      if (idle && entry.breaker.state(nowMs) !== "open" && (entry.tokens?.isFull(nowMs) ?? true)) {
        this.#entries.delete(integrationId);
      }
    }
  }
}

/**
 * Tests whether a send's result or error has `replayed: true`: an idempotent
 * repeat returned from the stored outcome. It shows nothing about the
 * gateway, so it neither closes nor keeps closed the integration's circuit.
 */
function isReplay(outcome: unknown): boolean {
  return typeof outcome === "object" && outcome !== null && (outcome as { replayed?: unknown }).replayed === true;
}

/** Returns the fields of an integration that decide how its gateway is reached, joined into one string to compare. */
function gatewaySettings(integration: Integration): string {
  const { baseUrl, apiKeyHeader, apiKey, secretKeyHeader, secretKey, authenticateByToken, authUrl, tokenKey } = integration;
  return JSON.stringify([baseUrl, apiKeyHeader, apiKey, secretKeyHeader, secretKey, authenticateByToken, authUrl, tokenKey]);
}
