import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import type { GatewayFailure } from "../errors.js";

/** Outcome of one request to a gateway: `ok` for a 2xx reply, else the failure kind. */
export type GatewayOutcome = "ok" | GatewayFailure;

/** State of an integration's circuit breaker. */
export type CircuitState = "closed" | "open" | "half_open";

const CIRCUIT_STATES: readonly CircuitState[] = ["closed", "open", "half_open"];

/**
 * Histogram buckets in seconds, from 5 ms to the 60 s that covers a send
 * timeout raised well above its 10 s default.
 */
const LATENCY_BUCKETS_SECONDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/** Options of {@link ServiceMetrics}. */
export interface ServiceMetricsOptions {
  /** Also collect Node.js process metrics (`process_*`, `nodejs_*`). Off by default, for tests. */
  processMetrics?: boolean;
}

/**
 * The service's Prometheus metrics, in a registry of their own.
 *
 * One instance per running service: the app creates it and hands it to the
 * call pipeline and the dispatcher, and `GET /metrics` renders it. Labels
 * carry integration ids, procedure names and fixed outcome words only, never
 * phone numbers, URLs or secrets, so the series count stays bounded by the
 * number of integrations.
 *
 * Features that count something call the method named for it, for example
 * `metrics.webhookRetry(integration.id, "unavailable")`.
 */
export class ServiceMetrics {
  readonly registry = new Registry();

  private readonly rpcs: Counter<"service" | "method" | "code">;
  private readonly rpcSeconds: Histogram<"service" | "method" | "code">;
  private readonly webhookAttempts: Counter<"integration_id" | "outcome">;
  private readonly webhookSeconds: Histogram<"integration_id">;
  private readonly webhookRetries: Counter<"integration_id" | "reason">;
  private readonly ssrfRefusals: Counter<"integration_id" | "reason">;
  private readonly tokenFetches: Counter<"integration_id" | "outcome">;
  private readonly sendsInFlight: Gauge;
  private readonly circuit: Gauge<"integration_id" | "state">;
  private readonly sendsWaiting: Gauge<"integration_id">;

  constructor(options: ServiceMetricsOptions = {}) {
    const registers = [this.registry];
    this.rpcs = new Counter({
      name: "smsgateway_rpcs_total",
      help:
        "RPCs of the smsgateway.v1 services that finished, and requests that the port rejected before a call started, " +
        "by service, method and gRPC status code; unknown services and methods count as unknown.",
      labelNames: ["service", "method", "code"],
      registers,
    });
    this.rpcSeconds = new Histogram({
      name: "smsgateway_rpc_duration_seconds",
      help: "Time from receiving an smsgateway.v1 RPC to its response, by service, method and gRPC status code.",
      labelNames: ["service", "method", "code"],
      buckets: LATENCY_BUCKETS_SECONDS,
      registers,
    });
    this.webhookAttempts = new Counter({
      name: "smsgateway_webhook_attempts_total",
      help: "SMS requests sent to a gateway, by integration and outcome (ok, or the failure kind).",
      labelNames: ["integration_id", "outcome"],
      registers,
    });
    this.webhookSeconds = new Histogram({
      name: "smsgateway_webhook_duration_seconds",
      help: "Time of one SMS request to a gateway, until its reply was read or it failed, by integration.",
      labelNames: ["integration_id"],
      buckets: LATENCY_BUCKETS_SECONDS,
      registers,
    });
    this.webhookRetries = new Counter({
      name: "smsgateway_webhook_retries_total",
      help: "SMS requests sent again after a failed attempt, by integration and the failure kind that caused the retry.",
      labelNames: ["integration_id", "reason"],
      registers,
    });
    this.ssrfRefusals = new Counter({
      name: "smsgateway_ssrf_refusals_total",
      help: "Gateway or auth URLs rejected because they resolve to a private or internal address, by integration and reason.",
      labelNames: ["integration_id", "reason"],
      registers,
    });
    this.tokenFetches = new Counter({
      name: "smsgateway_token_fetches_total",
      help: "Token requests sent to an integration's auth URL, by integration and outcome (ok, or the failure kind).",
      labelNames: ["integration_id", "outcome"],
      registers,
    });
    this.sendsInFlight = new Gauge({
      name: "smsgateway_sends_in_flight",
      help: "Sends in progress: started, and not yet accepted by the gateway or failed.",
      registers,
    });
    this.circuit = new Gauge({
      name: "smsgateway_circuit_state",
      help: "Circuit breaker state per integration: 1 for the current state (closed, open or half_open), 0 for the others.",
      labelNames: ["integration_id", "state"],
      registers,
    });
    this.sendsWaiting = new Gauge({
      name: "smsgateway_sends_waiting",
      help: "Messages of SendSmsBatch calls waiting for a free slot of the integration's concurrency limit, by integration.",
      labelNames: ["integration_id"],
      registers,
    });

    if (options.processMetrics === true) {
      collectDefaultMetrics({ register: this.registry });
    }
  }

  /** Counts one finished RPC; `procedure` is `package.Service/Method`, `code` the gRPC name such as `NOT_FOUND`. */
  rpcFinished(procedure: string, code: string, seconds: number): void {
    const slash = procedure.lastIndexOf("/");
    const labels = { service: procedure.slice(0, slash), method: procedure.slice(slash + 1), code };
    this.rpcs.inc(labels);
    this.rpcSeconds.observe(labels, seconds);
  }

  /**
   * Counts one request that the port rejected before a call started, such as
   * a call to an unknown method. `service` and `method` must name a service
   * and method that the port serves, or be `unknown`. Names taken from the
   * request unchecked would let a caller create series without bound.
   */
  rpcRejected(service: string, method: string, code: string): void {
    this.rpcs.inc({ service, method, code });
  }

  /** Counts one SMS request to a gateway and records how long it took, retries included one by one. */
  webhookAttempt(integrationId: string, outcome: GatewayOutcome, seconds: number): void {
    this.webhookAttempts.inc({ integration_id: integrationId, outcome });
    this.webhookSeconds.observe({ integration_id: integrationId }, seconds);
  }

  /** Counts one retry of an SMS request, with the failure kind of the attempt before it. */
  webhookRetry(integrationId: string, reason: GatewayFailure): void {
    this.webhookRetries.inc({ integration_id: integrationId, reason });
  }

  /**
   * Counts one URL rejected by the SSRF guard. `integrationId` is empty when
   * the integration has no id yet. `reason` is a fixed word such as
   * `private` or `link_local`, never the address or host name.
   */
  ssrfRefusal(integrationId: string, reason: string): void {
    this.ssrfRefusals.inc({ integration_id: integrationId, reason });
  }

  /** Counts one token request sent to an auth URL; a token served from a cache is not a fetch. */
  tokenFetch(integrationId: string, outcome: GatewayOutcome): void {
    this.tokenFetches.inc({ integration_id: integrationId, outcome });
  }

  /**
   * Counts a send as in flight until the returned function is called.
   * Calling that function again has no effect, so it is safe in `finally`.
   */
  sendStarted(): () => void {
    this.sendsInFlight.inc();
    let ended = false;
    return () => {
      if (!ended) {
        ended = true;
        this.sendsInFlight.dec();
      }
    };
  }

  /**
   * Reads every integration's circuit state and waiting sends from `source`
   * at each scrape, so the gauges never show an integration that flow
   * control has forgotten.
   */
  observeFlowStates(source: () => Iterable<{ integrationId: string; circuit: CircuitState; waiting: number }>): void {
    collectEachScrape(this.circuit, () => {
      for (const { integrationId, circuit } of source()) {
        this.circuitState(integrationId, circuit);
      }
    });
    collectEachScrape(this.sendsWaiting, () => {
      for (const { integrationId, waiting } of source()) {
        this.sendsWaiting.set({ integration_id: integrationId }, waiting);
      }
    });
  }

  /** Sets the circuit breaker state of an integration. */
  circuitState(integrationId: string, state: CircuitState): void {
    for (const candidate of CIRCUIT_STATES) {
      this.circuit.set({ integration_id: integrationId, state: candidate }, candidate === state ? 1 : 0);
    }
  }

  /** Returns every metric in the Prometheus text format. */
  render(): Promise<string> {
    return this.registry.metrics();
  }

  /** Content type of {@link render}'s output. */
  get contentType(): string {
    return this.registry.contentType;
  }
}

/** Makes `gauge` drop its values and call `fill` each time the registry is scraped. */
function collectEachScrape(gauge: Gauge<string>, fill: () => void): void {
  Object.assign(gauge, {
    collect() {
      gauge.reset();
      fill();
    },
  });
}
