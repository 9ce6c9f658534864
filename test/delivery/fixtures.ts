import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";

import { pino, type Logger } from "pino";
import { afterEach, beforeEach, expect } from "vitest";

import { Delivery, type DeliverySettings } from "../../src/delivery/delivery.js";
import { Dispatcher, type DispatcherOptions } from "../../src/dispatch/dispatcher.js";
import type { IntegrationFields } from "../../src/domain/integration.js";
import { IdempotencyError, type IdempotencyConflict } from "../../src/errors.js";
import type { IdempotencyStore } from "../../src/store/idempotency-store.js";
import type { IntegrationStore, StoredIntegration } from "../../src/store/integration-store.js";
import { openStore } from "../../src/store/open-store.js";
import { OutboundGuard } from "../../src/outbound/outbound-guard.js";
import { LOOPBACK_ALLOW_LIST } from "../helpers/stub-resolver.js";
import { ScriptedGateway, type RecordedRequest, type ScriptedReply } from "../helpers/scripted-gateway.js";
import { makeIntegration } from "../dispatch/fixtures.js";

/** Delivery settings for tests: short waits, so retries run fast. */
export const TEST_SETTINGS: DeliverySettings = {
  maxAttempts: 3,
  attemptTimeoutMs: 2_000,
  baseDelayMs: 10,
  maxDelayMs: 50,
  retryAfterMaxMs: 3_000,
  idempotencyTtlSeconds: 3_600,
  tokenLifetimeSeconds: 0,
};

/** Where a harness stores its data: a fresh SQLite directory, or a PostgreSQL schema. */
export type StoreTarget = { kind: "sqlite"; dataDir: string } | { kind: "postgres"; databaseUrl: string; schema: string };

/** Options of {@link openHarness}. */
export interface HarnessOptions {
  /** Integration fields; `baseUrl` at least. */
  integration: Partial<IntegrationFields> & { baseUrl: string };
  settings?: Partial<DeliverySettings>;
  dispatcher?: Partial<DispatcherOptions>;
  /** Defaults to a new SQLite directory, removed on close. */
  target?: StoreTarget;
  logger?: Logger;
  random?: () => number;
  now?: () => Date;
}

/** A `Delivery` over a real store and dispatcher, with one stored integration. */
export interface Harness {
  delivery: Delivery;
  dispatcher: Dispatcher;
  store: IntegrationStore;
  idempotency: IdempotencyStore;
  integration: StoredIntegration;
  close(): Promise<void>;
}

/** Returns the fields of the test integration, with overrides. */
export function integrationFields(overrides: Partial<IntegrationFields> & { baseUrl: string }): IntegrationFields {
  const { id: _id, createTime: _createTime, updateTime: _updateTime, ...fields } = makeIntegration(overrides.baseUrl, overrides);
  return fields;
}

/**
 * Opens a store (SQLite in a new directory unless `target` names another),
 * stores the integration as `acme` unless it exists, and builds a
 * `Delivery` on a new dispatcher.
 */
export async function openHarness(options: HarnessOptions): Promise<Harness> {
  const target = options.target ?? { kind: "sqlite", dataDir: await mkdtemp(path.join(tmpdir(), "smsgateway-delivery-")) };
  const logger = options.logger ?? pino({ level: "silent" });
  const opened =
    target.kind === "sqlite"
      ? await openStore({ dataDir: target.dataDir, logger })
      : await openStore({ databaseUrl: target.databaseUrl, schema: target.schema, dataDir: "/nonexistent", logger });
  const fields = integrationFields(options.integration);
  const integration = (await opened.store.get("acme")) ?? (await opened.store.create(fields, "acme"));

  const dispatcher = new Dispatcher({
    timeoutMs: 5_000,
    maxResponseBytes: 1024 * 1024,
    maxConnectionsPerOrigin: 16,
    keepAliveTimeoutMs: 1_000,
    outbound: new OutboundGuard({ allowList: LOOPBACK_ALLOW_LIST }),
    logger,
    ...options.dispatcher,
  });
  const delivery = new Delivery({
    dispatcher,
    idempotencyStore: opened.idempotency,
    settings: { ...TEST_SETTINGS, ...options.settings },
    logger,
    ...(options.random === undefined ? {} : { random: options.random }),
    ...(options.now === undefined ? {} : { now: options.now }),
  });

  return {
    delivery,
    dispatcher,
    store: opened.store,
    idempotency: opened.idempotency,
    integration,
    async close() {
      await delivery.close();
      await dispatcher.close();
      await opened.store.close();
      if (options.target === undefined && target.kind === "sqlite") {
        await rm(target.dataDir, { recursive: true, force: true });
      }
    },
  };
}

/** A scripted gateway per test, and the harnesses a test opened, closed after it. */
export interface DeliveryTestContext {
  /** The gateway of the running test. */
  readonly gateway: ScriptedGateway;
  /** Opens a harness whose integration sends to the gateway's `/sms`, unless `options` sets another integration. */
  harness(options?: Partial<HarnessOptions>): Promise<Harness>;
}

/** Registers hooks that start a scripted gateway before each test, and close it and the test's harnesses after. */
export function setUpDeliveryTests(): DeliveryTestContext {
  let current: ScriptedGateway | undefined;
  const harnesses: Harness[] = [];
  beforeEach(async () => {
    current = await ScriptedGateway.start();
  });
  afterEach(async () => {
    for (const harness of harnesses.splice(0)) {
      await harness.close();
    }
    await current?.close();
  });

  const context: DeliveryTestContext = {
    get gateway(): ScriptedGateway {
      if (current === undefined) {
        throw new Error("the gateway runs only inside a test");
      }
      return current;
    },
    async harness(options = {}) {
      const opened = await openHarness({ integration: { baseUrl: context.gateway.url("/sms") }, ...options });
      harnesses.push(opened);
      return opened;
    },
  };
  return context;
}

/** Returns a reply script that gives `replies` in order and repeats the last one. */
export function inOrder(...replies: ScriptedReply[]): (request: RecordedRequest) => ScriptedReply {
  let next = 0;
  return () => {
    const reply = replies[Math.min(next, replies.length - 1)]!;
    next += 1;
    return reply;
  };
}

/** Returns a reply script that sends `reply` after `ms` milliseconds. */
export function delayed(ms: number, reply: ScriptedReply): () => Promise<ScriptedReply> {
  return async () => {
    await new Promise((resolve) => setTimeout(resolve, ms));
    return reply;
  };
}

/** Builds a 200 reply with a message id. */
export function accepted(id = "m1"): ScriptedReply {
  return { json: { data: { id, date: "2026-01-02T03:04:05Z" } } };
}

/** Awaits a call that must fail with an `IdempotencyError` of `conflict`, and returns it. */
export async function idempotencyErrorOf(promise: Promise<unknown>, conflict: IdempotencyConflict): Promise<IdempotencyError> {
  const error = await promise.then(
    () => new Error("expected the send to fail, but it succeeded"),
    (reason: unknown) => reason,
  );
  expect(error).toBeInstanceOf(IdempotencyError);
  expect((error as IdempotencyError).conflict).toBe(conflict);
  return error as IdempotencyError;
}
