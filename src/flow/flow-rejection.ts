import { FlowLimitError } from "../errors.js";
import type { CircuitRejection } from "./circuit-breaker.js";
import type { SendLimits } from "./flow-limits.js";

/** Builds the error for a send rejected because the integration has its maximum of sends in flight. */
export function concurrencyLimitError(integrationId: string, limits: SendLimits, retryDelayMs: number): FlowLimitError {
  const limit = limits.maxConcurrentSends;
  const source = limits.concurrencyIsDefault
    ? "the SEND_CONCURRENCY default, as max_concurrent_sends is 0"
    : "max_concurrent_sends";
  const message =
    `Integration "${integrationId}" already has ${limit} ${plural(limit, "send")} in flight, its limit (${source}), ` +
    `so this SMS was not sent. Retry after ${formatDelay(retryDelayMs)}, or raise max_concurrent_sends if the gateway can take more.`;
  return new FlowLimitError(message, {
    reason: "CONCURRENCY_LIMIT",
    integrationId,
    limit: String(limit),
    retryDelayMs,
  });
}

/** Builds the error for a send rejected because the integration used up its sends per second. */
export function rateLimitError(integrationId: string, limits: SendLimits, retryDelayMs: number): FlowLimitError {
  const rate = limits.maxSendsPerSecond;
  const source = limits.rateIsDefault
    ? "the SEND_RATE_PER_SECOND default, as max_sends_per_second is 0"
    : "max_sends_per_second";
  const message =
    `Integration "${integrationId}" reached its limit of ${rate} ${plural(rate, "send")} per second (${source}), ` +
    `so this SMS was not sent. Retry after ${formatDelay(retryDelayMs)}.`;
  return new FlowLimitError(message, {
    reason: "RATE_LIMITED",
    integrationId,
    limit: String(rate),
    retryDelayMs,
  });
}

/**
 * Builds the error for a send rejected by the integration's circuit breaker.
 * While the circuit is open, the retry delay is the rest of the cool-down.
 * While it is half-open with every probe slot taken, the delay is
 * `probeDelayMs`, an estimate of when a probe finishes.
 */
export function circuitOpenError(
  integrationId: string,
  rejection: CircuitRejection,
  failureThreshold: number,
  probeDelayMs: number,
): FlowLimitError {
  let message: string;
  let retryDelayMs: number;
  if (rejection.state === "open") {
    retryDelayMs = rejection.remainingMs;
    message =
      `The circuit breaker of integration "${integrationId}" is open after ${failureThreshold} consecutive gateway failures ` +
      `(5xx or 408 replies, connection failures or timeouts), so this SMS was not sent. ` +
      `Retry after ${formatDelay(retryDelayMs)}, when a probe send is let through.`;
  } else {
    retryDelayMs = probeDelayMs;
    const probes = rejection.probesInFlight;
    message =
      `The circuit breaker of integration "${integrationId}" is half-open and its ${probes} probe ${plural(probes, "send")} ` +
      `${probes === 1 ? "is" : "are"} in flight, so this SMS was not sent. ` +
      `Retry after ${formatDelay(retryDelayMs)}; a successful probe closes the circuit.`;
  }

  return new FlowLimitError(message, {
    reason: "CIRCUIT_OPEN",
    integrationId,
    limit: String(failureThreshold),
    retryDelayMs,
    metadata: { circuit_state: rejection.state },
  });
}

/** Formats a delay as `450 ms` below one second, else in seconds with one decimal, as `12.3 s`. */
export function formatDelay(delayMs: number): string {
  if (delayMs < 1000) {
    return `${Math.ceil(delayMs)} ms`;
  }
  return `${Number((delayMs / 1000).toFixed(1))} s`;
}

function plural(count: number, noun: string): string {
  return count === 1 ? noun : `${noun}s`;
}
