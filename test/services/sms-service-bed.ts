// An SmsService built from the service's own parts over a real SQLite store, with an idempotency
// store that counts its reads and can delay a claim, for tests that need to see or time store queries.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { performance } from "node:perf_hooks";

import { pino, type Logger } from "pino";

import { Delivery, type DeliverySettings } from "../../src/delivery/delivery.js";
import { Dispatcher } from "../../src/dispatch/dispatcher.js";
import type { IntegrationFields } from "../../src/domain/integration.js";
import { SendGate } from "../../src/flow/send-gate.js";
import { OutboundGuard } from "../../src/outbound/outbound-guard.js";
import type { CallContext } from "../../src/rpc/call-context.js";
import { IntegrationService } from "../../src/services/integration-service.js";
import { SmsService } from "../../src/services/sms-service.js";
import type { IdempotencyClaim, IdempotencyOutcome, IdempotencyRecord, IdempotencyStore } from "../../src/store/idempotency-store.js";
import type { IntegrationStore, StoredIntegration } from "../../src/store/integration-store.js";
import { openStore } from "../../src/store/open-store.js";
import { IntegrationTester } from "../../src/tester/integration-tester.js";
import { ScriptedGateway } from "../helpers/scripted-gateway.js";
import { LOOPBACK_ALLOW_LIST, StubResolver } from "../helpers/stub-resolver.js";
import { sampleFields } from "../store/integration-fixtures.js";

/**
 * Delegates to a real idempotency store, counts the reads of each key, and
 * lets a test delay a claim before or after the database runs it.
 */
export class CountingIdempotencyStore implements IdempotencyStore {
  /** Reads (`get`) per key. */
  readonly reads = new Map<string, number>();
  /**
   * Awaited after the database returned a claim's result, before the claim
   * returns. Unset, a claim returns at once.
   */
  afterClaim: ((claim: IdempotencyClaim) => Promise<void>) | undefined;
  /** Awaited before a claim reaches the database. Unset, a claim starts at once. */
  beforeClaim: ((claim: IdempotencyClaim) => Promise<void>) | undefined;

  constructor(private readonly inner: IdempotencyStore) {}

  /** Total reads of every key. */
  get totalReads(): number {
    return [...this.reads.values()].reduce((sum, count) => sum + count, 0);
  }

  /** The largest number of reads of one key, 0 when none was read. */
  get maxReadsOfOneKey(): number {
    return Math.max(0, ...this.reads.values());
  }

  async claim(claim: IdempotencyClaim): Promise<boolean> {
    await this.beforeClaim?.(claim);
    const claimed = await this.inner.claim(claim);
    await this.afterClaim?.(claim);
    return claimed;
  }

  async get(integrationId: string, key: string): Promise<IdempotencyRecord | null> {
    this.reads.set(key, (this.reads.get(key) ?? 0) + 1);
    return this.inner.get(integrationId, key);
  }

  finish(integrationId: string, key: string, owner: string, outcome: IdempotencyOutcome): Promise<boolean> {
    return this.inner.finish(integrationId, key, owner, outcome);
  }

  abandon(integrationId: string, key: string, owner: string, outcome: string, now: Date): Promise<boolean> {
    return this.inner.abandon(integrationId, key, owner, outcome, now);
  }

  purgeExpired(now: Date): Promise<number> {
    return this.inner.purgeExpired(now);
  }
}

/** Settings of {@link openSmsServiceBed}. Each has a default that suits most tests. */
export interface SmsServiceBedSettings {
  batchConcurrency?: number;
  /** SEND_MAX_ATTEMPTS. */
  sendMaxAttempts?: number;
  /** RETRY_AFTER_MAX_MS, which is also the longest gateway wait a batch makes. */
  retryAfterMaxMs?: number;
  circuitFailureThreshold?: number;
  circuitOpenMs?: number;
  /** Clock of the send gate in milliseconds, which tests stop to count rate-limit tokens exactly; `performance.now` when unset. */
  gateNow?: () => number;
}

/** An SmsService over a SQLite store in a new directory, a scripted gateway, and a second Delivery in place of another replica. */
export interface SmsServiceBed {
  sms: SmsService;
  gateway: ScriptedGateway;
  gate: SendGate;
  /** The idempotency store of `sms`. The replica's reads are not counted. */
  keys: CountingIdempotencyStore;
  /**
   * The integration store of `sms`. `integrationReadHook`, when set, runs
   * after each read of an integration and before the read returns.
   */
  integrations: IntegrationStore;
  integrationReadHook: (() => Promise<void>) | undefined;
  /** Delivery of another replica: the same database, its own dispatcher and no flow control. */
  replica: Delivery;
  /** Aborts when the test begins a shutdown, as the service's lifecycle does. */
  stopping: AbortController;
  /** Stores integration `id`, which sends to the gateway's `/<id>`, with `fields` applied. */
  configure(id: string, fields?: Partial<IntegrationFields>): Promise<StoredIntegration>;
  /** Returns the context of a call with `timeoutMs` from now, without a deadline when unset. */
  context(options?: { timeoutMs?: number; signal?: AbortSignal; requestId?: string }): CallContext;
  close(): Promise<void>;
}

/** Opens an {@link SmsServiceBed}. Close it after the test. */
export async function openSmsServiceBed(settings: SmsServiceBedSettings = {}): Promise<SmsServiceBed> {
  const logger = pino({ level: "silent" });
  const dataDir = await mkdtemp(path.join(tmpdir(), "smsgateway-sms-service-"));
  const opened = await openStore({ dataDir, logger });
  const gateway = await ScriptedGateway.start();
  const keys = new CountingIdempotencyStore(opened.idempotency);
  const deliverySettings: DeliverySettings = {
    maxAttempts: settings.sendMaxAttempts ?? 1,
    attemptTimeoutMs: 5_000,
    baseDelayMs: 10,
    maxDelayMs: 50,
    retryAfterMaxMs: settings.retryAfterMaxMs ?? 3_000,
    idempotencyTtlSeconds: 3_600,
    tokenLifetimeSeconds: 0,
  };
  // No name resolves: every URL of these tests is an IP literal.
  const outbound = new OutboundGuard({ allowList: LOOPBACK_ALLOW_LIST, resolver: new StubResolver() });
  const dispatcher = newDispatcher(outbound, logger);
  const replicaDispatcher = newDispatcher(outbound, logger);
  const delivery = new Delivery({ dispatcher, idempotencyStore: keys, settings: deliverySettings, logger });
  const replica = new Delivery({ dispatcher: replicaDispatcher, idempotencyStore: opened.idempotency, settings: deliverySettings, logger });
  const gate = new SendGate({
    defaults: { sendConcurrency: 100, sendRatePerSecond: 0 },
    circuit: {
      failureThreshold: settings.circuitFailureThreshold ?? 0,
      openMs: settings.circuitOpenMs ?? 1_000,
      halfOpenProbes: 1,
    },
    sendTimeoutMs: 5_000,
    logger,
    ...(settings.gateNow === undefined ? {} : { now: settings.gateNow }),
  });

  const bed: SmsServiceBed = {
    sms: undefined as unknown as SmsService,
    gateway,
    gate,
    keys,
    integrations: undefined as unknown as IntegrationStore,
    integrationReadHook: undefined,
    replica,
    stopping: new AbortController(),
    async configure(id, fields = {}) {
      return opened.store.create(sampleFields({ baseUrl: gateway.url(`/${id}`), secretKeyHeader: "", secretKey: "", ...fields }), id);
    },
    context(options = {}) {
      return callContext(logger, options);
    },
    async close() {
      await delivery.close();
      await replica.close();
      await dispatcher.close();
      await replicaDispatcher.close();
      await opened.store.close();
      await gateway.close();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
  bed.integrations = withReadHook(opened.store, () => bed.integrationReadHook);
  const tester = new IntegrationTester({ outbound, dispatcher, gate });
  const integrationService = new IntegrationService(bed.integrations, outbound, undefined, tester);
  bed.sms = new SmsService(
    integrationService,
    delivery,
    gate,
    { maxMessages: 1_000, concurrency: settings.batchConcurrency ?? 4, gatewayWaitMaxMs: deliverySettings.retryAfterMaxMs },
    bed.stopping.signal,
  );
  return bed;
}

function newDispatcher(outbound: OutboundGuard, logger: Logger): Dispatcher {
  return new Dispatcher({ timeoutMs: 5_000, maxResponseBytes: 64 * 1024, maxConnectionsPerOrigin: 16, keepAliveTimeoutMs: 1_000, outbound, logger });
}

/** Returns `store` with `get` awaiting the hook that `hook` returns, when there is one, before it returns. */
function withReadHook(store: IntegrationStore, hook: () => (() => Promise<void>) | undefined): IntegrationStore {
  return new Proxy(store, {
    get(target, property, receiver) {
      if (property === "get") {
        return async (id: string) => {
          const integration = await target.get(id);
          await hook()?.();
          return integration;
        };
      }
      const value: unknown = Reflect.get(target, property, receiver);
      return typeof value === "function" ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}

function callContext(logger: Logger, options: { timeoutMs?: number; signal?: AbortSignal; requestId?: string }): CallContext {
  const startedAt = performance.now();
  const { timeoutMs } = options;
  const signals = [options.signal, timeoutMs === undefined ? undefined : AbortSignal.timeout(timeoutMs)].filter((signal) => signal !== undefined);
  return {
    procedure: "smsgateway.v1.SmsService/SendSmsBatch",
    signal: AbortSignal.any(signals),
    timeoutMs: () => (timeoutMs === undefined ? undefined : timeoutMs - (performance.now() - startedAt)),
    requestHeader: () => null,
    requestId: options.requestId ?? "test-call",
    log: logger,
  };
}
