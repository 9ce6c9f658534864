import type { Logger } from "pino";

import { copyWith } from "../copy-with.js";
import type { Integration } from "../domain/integration.js";
import type { Dispatcher, SendOptions, SmsMessage } from "../dispatch/dispatcher.js";
import type { ServiceMetrics } from "../observability/metrics.js";
import { SendDeadline } from "../dispatch/send-deadline.js";
import { buildSmsRequest } from "../dispatch/sms-request.js";
import type { IdempotencyStore } from "../store/idempotency-store.js";
import { IdempotencyKeys, type KeyedResult, type KeyLookup } from "./idempotency-keys.js";
import { requestHash } from "./request-hash.js";
import { RetryingSender } from "./retrying-sender.js";
import type { RetrySettings } from "./retry-policy.js";
import { TokenCache } from "./token-cache.js";

export type { KeyedResult, KeyLookup } from "./idempotency-keys.js";

/** Delivery settings. The config module owns their defaults. */
export interface DeliverySettings extends RetrySettings {
  /** How long an outcome of a send with an idempotency key is kept (`IDEMPOTENCY_TTL_SECONDS`). */
  idempotencyTtlSeconds: number;
  /** Token lifetime when neither the auth reply nor the integration sets one (`TOKEN_LIFETIME_SECONDS`). */
  tokenLifetimeSeconds: number;
}

/** Per-send options of {@link Delivery.send}. */
export interface DeliverySendOptions extends SendOptions {
  /**
   * Runs right before the send's first SMS request, after every store read
   * and token fetch of the send. What it throws ends the send, with nothing
   * sent, and a claimed idempotency key is left retryable.
   */
  beforeFirstRequest?: () => void;
}

/** Settings and collaborators of {@link Delivery}. */
export interface DeliveryOptions {
  dispatcher: Dispatcher;
  idempotencyStore: IdempotencyStore;
  settings: DeliverySettings;
  logger: Logger;
  /** Returns a number in [0, 1) for the backoff jitter; tests replace it. */
  random?: () => number;
  /** Clock of the idempotency keys and token expiry; tests replace it. */
  now?: () => Date;
  /** Counts sends in flight and retries. */
  metrics?: ServiceMetrics;
}

/**
 * Delivers SMS reliably on top of the single-attempt `Dispatcher`: retries
 * where they cannot send twice, keeps one send per idempotency key, and
 * caches tokens from `auth_url`.
 *
 * Create one per process, next to the dispatcher, and call `close` before
 * closing the store.
 */
export class Delivery {
  private readonly dispatcher: Dispatcher;
  private readonly sender: RetryingSender;
  private readonly keys: IdempotencyKeys;
  private readonly metrics: ServiceMetrics | undefined;

  constructor(options: DeliveryOptions) {
    const { dispatcher, settings, logger } = options;
    const now = options.now ?? (() => new Date());
    this.dispatcher = dispatcher;
    this.metrics = options.metrics;
    const tokens = new TokenCache({
      source: dispatcher,
      defaultLifetimeSeconds: settings.tokenLifetimeSeconds,
      sharedFetchTimeoutMs: dispatcher.budgetMs(undefined),
      now: () => now().getTime(),
    });
    this.sender = new RetryingSender({
      dispatcher,
      tokens,
      settings,
      logger,
      ...(options.random === undefined ? {} : { random: options.random }),
      ...(options.metrics === undefined ? {} : { metrics: options.metrics }),
    });
    this.keys = new IdempotencyKeys({
      store: options.idempotencyStore,
      ttlSeconds: settings.idempotencyTtlSeconds,
      logger,
      now,
    });
  }

  /**
   * Sends one SMS through `integration`, within `SEND_TIMEOUT_MS` or the
   * caller's shorter deadline, retries included.
   *
   * With `message.idempotencyKey`, a repeat of the same request returns the
   * first outcome with `replayed: true` instead of sending again.
   *
   * @throws InvalidArgumentError when the passthrough is invalid; nothing is
   *   sent or stored then.
   * @throws GatewayError when the gateway did not accept the message.
   * @throws IdempotencyError when the idempotency key cannot be used for
   *   this request now.
   */
  async send(integration: Integration, message: SmsMessage, options: DeliverySendOptions = {}): Promise<KeyedResult> {
    const sms = buildSmsRequest(integration, message);
    const key = message.idempotencyKey ?? "";
    const deadline = new SendDeadline(this.dispatcher.budgetMs(options.deadlineMs), options.signal, options.requestId);
    const sendEnded = this.metrics?.sendStarted();
    try {
      await this.dispatcher.checkOutbound(integration, deadline);
      const send = () => this.sender.send(integration, sms, deadline, key !== "", options.beforeFirstRequest);
      if (key === "") {
        return copyWith(await send(), { replayed: false });
      }
      const scope = { integrationId: integration.id, key, requestHash: requestHash(integration.id, message) };
      return await this.keys.run(scope, deadline, send);
    } finally {
      sendEnded?.();
      deadline.dispose();
    }
  }

  /**
   * Looks up the stored outcome of a message's idempotency key as a replay:
   * `found` with it, `claimed` while another send has claimed the key, and `none`
   * when the message has no key or the key has no finished outcome. Nothing
   * is sent.
   *
   * @throws GatewayError stored by an earlier send of the key that failed.
   * @throws IdempotencyError when the key belongs to another request, or its
   *   send recorded no outcome.
   */
  async storedOutcome(integration: Integration, message: SmsMessage): Promise<KeyLookup> {
    const key = message.idempotencyKey ?? "";
    if (key === "") {
      return { kind: "none" };
    }
    return this.keys.storedOutcome({ integrationId: integration.id, key, requestHash: requestHash(integration.id, message) });
  }

  /** Waits for background store work, so the store can be closed next. */
  async close(): Promise<void> {
    await this.keys.close();
  }
}
