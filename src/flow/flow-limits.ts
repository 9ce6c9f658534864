import type { Integration } from "../domain/integration.js";

/** Largest `max_concurrent_sends` and `SEND_CONCURRENCY`. */
export const MAX_CONCURRENT_SENDS = 10_000;

/** Smallest rate other than 0 for `max_sends_per_second` and `SEND_RATE_PER_SECOND`: one send per 100 seconds. */
export const MIN_SENDS_PER_SECOND = 0.01;

/** Largest `max_sends_per_second` and `SEND_RATE_PER_SECOND`. */
export const MAX_SENDS_PER_SECOND = 100_000;

/** Service-wide limits for integrations whose own limit fields are 0. */
export interface FlowDefaults {
  /** `SEND_CONCURRENCY`: maximum sends in flight per integration. */
  sendConcurrency: number;
  /** `SEND_RATE_PER_SECOND`: maximum sends per second per integration, 0 for no limit. */
  sendRatePerSecond: number;
}

/** The limits that apply to one integration's next send. */
export interface SendLimits {
  maxConcurrentSends: number;
  /** True when `maxConcurrentSends` is the service default. */
  concurrencyIsDefault: boolean;
  /** 0 means no rate limit. */
  maxSendsPerSecond: number;
  /** True when `maxSendsPerSecond` is the service default. */
  rateIsDefault: boolean;
}

/** Resolves an integration's limit fields, where 0 means the service default. */
export function resolveSendLimits(
  integration: Pick<Integration, "maxConcurrentSends" | "maxSendsPerSecond">,
  defaults: FlowDefaults,
): SendLimits {
  const concurrencyIsDefault = integration.maxConcurrentSends === 0;
  const rateIsDefault = integration.maxSendsPerSecond === 0;
  return {
    maxConcurrentSends: concurrencyIsDefault ? defaults.sendConcurrency : integration.maxConcurrentSends,
    concurrencyIsDefault,
    maxSendsPerSecond: rateIsDefault ? defaults.sendRatePerSecond : integration.maxSendsPerSecond,
    rateIsDefault,
  };
}
