import { setTimeout as sleep } from "node:timers/promises";
import v8 from "node:v8";
import vm from "node:vm";

import { ConnectError, createClient, type CallOptions, type Client } from "@connectrpc/connect";
import { createConnectTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { expect } from "vitest";

import { GatewayErrorSchema, type GatewayError } from "../../gen/smsgateway/v1/errors_pb.js";
import { IntegrationService } from "../../gen/smsgateway/v1/integration_service_pb.js";
import { SmsService, type SendSmsRequest, type SendSmsResponse } from "../../gen/smsgateway/v1/sms_service_pb.js";
import type { Config } from "../../src/config/settings.js";
import { CLIENT_KINDS } from "../helpers/clients.js";
import { ScriptedGateway, type ScriptedGatewayOptions } from "../helpers/scripted-gateway.js";
import { startTestService, type TestService } from "../helpers/service.js";

/** `SEND_TIMEOUT_MS` of the service under test: short, so that the suite stays fast. */
export const SEND_TIMEOUT_MS = 1_500;
/** `SEND_ATTEMPT_TIMEOUT_MS` of the service under test. */
const ATTEMPT_TIMEOUT_MS = 700;
/** `SEND_MAX_ATTEMPTS` of the service under test (the default). */
export const MAX_ATTEMPTS = 3;

/** Settings of every service the suite starts. */
const HOSTILE_CONFIG: Partial<Config> = {
  sendTimeoutMs: SEND_TIMEOUT_MS,
  sendAttemptTimeoutMs: ATTEMPT_TIMEOUT_MS,
  sendMaxAttempts: MAX_ATTEMPTS,
  // Short backoff, so that retries fit in the short send timeout.
  retryBaseDelayMs: 20,
  retryMaxDelayMs: 50,
};

/**
 * Returns the longest time a call with `timeoutMs` may take in this suite:
 * three times the timeout, and at least one second over it. It is a bound
 * that catches a hang on a loaded machine, not a performance target.
 */
export function boundMs(timeoutMs: number): number {
  return Math.max(3 * timeoutMs, timeoutMs + 1_000);
}

/** Maximum wait for connections and handles to close after a case. */
const SETTLE_MS = 3_000;
/**
 * Maximum wait for the gateway's connections to close once the service has
 * stopped. It is below the 3 s that undici keeps an idle connection to a
 * Node gateway (its 5 s Keep-Alive minus undici's 2 s margin), so a pool
 * that the service forgot to close fails the check.
 */
const STOPPED_SETTLE_MS = 1_000;

/** The SMS and integration clients of one case, and how to close their connections. */
interface OpenedClients {
  sms: Client<typeof SmsService>;
  integrations: Client<typeof IntegrationService>;
  close(): void;
}

/** A client library that the cases call the service through. */
export interface HostileClient {
  name: string;
  open(baseUrl: string): OpenedClients;
}

/**
 * Connect over HTTP/2 with its own session manager, so the case can close
 * the client's connection and count the handles that remain.
 */
const CONNECT_HTTP2: HostileClient = {
  name: "Connect over HTTP/2",
  open(baseUrl) {
    const sessionManager = new Http2SessionManager(baseUrl);
    const transport = createConnectTransport({ baseUrl, httpVersion: "2", sessionManager });
    return {
      sms: createClient(SmsService, transport),
      integrations: createClient(IntegrationService, transport),
      close: () => sessionManager.abort(),
    };
  },
};

const grpcJsKind = CLIENT_KINDS.find((kind) => kind.name.startsWith("grpc-js"));
if (grpcJsKind === undefined) {
  throw new Error("test/helpers/clients.ts has no grpc-js client kind");
}

/** Native gRPC through `@grpc/grpc-js`, whose calls take grpc-js's fast path in the service. */
const GRPC_JS: HostileClient = {
  name: "grpc-js",
  open(baseUrl) {
    const sms = grpcJsKind.create(SmsService, baseUrl);
    const integrations = grpcJsKind.create(IntegrationService, baseUrl);
    return {
      sms: sms.client,
      integrations: integrations.client,
      close() {
        sms.close();
        integrations.close();
      },
    };
  },
};

export { CONNECT_HTTP2, GRPC_JS };

/** The outcome of one SendSms call and the time it took. */
export type TimedOutcome = { elapsedMs: number } & (
  | { response: SendSmsResponse; error?: undefined }
  | { response?: undefined; error: ConnectError }
);

/** Fields of a SendSms request that a case sets. */
export type SendFields = Partial<Pick<SendSmsRequest, "to" | "content" | "idempotencyKey">>;

/** A running case: the hostile gateway, the service and a client. */
export interface HostileRun {
  gateway: ScriptedGateway;
  service: TestService;
  clients: OpenedClients;
  /** Sends one SMS through the integration `hostile` and times the call. */
  send(fields?: SendFields, options?: CallOptions): Promise<TimedOutcome>;
}

/** Options of one case. */
export interface CaseOptions {
  client: HostileClient;
  gateway?: ScriptedGatewayOptions;
  service?: Partial<Config>;
  /**
   * Connections to the gateway that may stay open, idle in the service's
   * pool, after the case: 0 when the service must have closed every
   * connection it used (a timeout, an abort, an oversized reply).
   */
  keptAlive: number;
}

/**
 * Runs one case against a fresh hostile gateway, service and client, then
 * checks that nothing leaked. Within a bounded wait, the gateway has at
 * most `keptAlive` connections open after the case and none once the
 * service has stopped. The test process then has no more TCP handles than
 * before the case.
 */
export async function runCase(options: CaseOptions, body: (run: HostileRun) => Promise<void>): Promise<void> {
  const baselineHandles = tcpHandleCount();
  const gateway = await ScriptedGateway.start(options.gateway);
  let service: TestService | undefined;
  let clients: OpenedClients | undefined;
  let passed = false;
  try {
    service = await startTestService({ ...HOSTILE_CONFIG, ...options.service });
    const opened = options.client.open(service.baseUrl);
    clients = opened;
    await configureHostileIntegration(opened, gateway);
    const run: HostileRun = {
      gateway,
      service,
      clients: opened,
      send: (fields = {}, callOptions = {}) =>
        timed(
          opened.sms.sendSms({ integrationId: "hostile", to: "+15551234567", content: "hello", ...fields }, callOptions),
        ),
    };

    await body(run);

    await waitUntil(() => gateway.openConnections <= options.keptAlive, SETTLE_MS);
    expect(gateway.openConnections, "gateway connections left open after the case").toBeLessThanOrEqual(options.keptAlive);
    passed = true;
  } finally {
    clients?.close();
    await service?.stop();
    if (passed) {
      await waitUntil(() => gateway.openConnections === 0, STOPPED_SETTLE_MS);
      expect(gateway.openConnections, "gateway connections left open after the service stopped").toBe(0);
    }
    await gateway.close();
    if (passed) {
      await waitUntil(() => tcpHandleCount() <= baselineHandles, SETTLE_MS);
      // At most: handles that an earlier case left closing may have gone meanwhile.
      expect(tcpHandleCount(), "TCP handles of the test process after the case").toBeLessThanOrEqual(baselineHandles);
    }
  }
}

async function configureHostileIntegration(clients: OpenedClients, gateway: ScriptedGateway): Promise<void> {
  await clients.integrations.configureIntegration({
    integration: {
      id: "hostile",
      baseUrl: gateway.url("/sms"),
      apiKeyHeader: "X-API-KEY",
      apiKey: "hostile-key-0123456789",
      defaultSender: "Acme",
    },
    allowMissing: true,
  });
}

/** Counts the TCP sockets and servers that keep the test process alive. */
export function tcpHandleCount(): number {
  return process.getActiveResourcesInfo().filter((name) => name.startsWith("TCP")).length;
}

/** Polls `condition` every 10 ms until it is true or `timeoutMs` passes. */
export async function waitUntil(condition: () => boolean, timeoutMs: number): Promise<void> {
  const giveUpAt = performance.now() + timeoutMs;
  while (!condition() && performance.now() < giveUpAt) {
    await sleep(10);
  }
}

async function timed(call: Promise<SendSmsResponse>): Promise<TimedOutcome> {
  const startedAt = performance.now();
  try {
    const response = await call;
    return { elapsedMs: performance.now() - startedAt, response };
  } catch (error) {
    return { elapsedMs: performance.now() - startedAt, error: ConnectError.from(error) };
  }
}

/** Returns the error of an outcome that must be a failure. */
export function failureOf(outcome: TimedOutcome): ConnectError {
  if (outcome.error === undefined) {
    throw new Error(`expected the call to fail, but it returned ${JSON.stringify(outcome.response)}`);
  }
  return outcome.error;
}

/** Returns the response of an outcome that must be a success. */
export function responseOf(outcome: TimedOutcome): SendSmsResponse {
  if (outcome.response === undefined) {
    throw new Error(`expected the call to succeed, but it failed with ${outcome.error.message}`);
  }
  return outcome.response;
}

/** Returns the `GatewayError` detail of an error. */
export function gatewayDetail(error: ConnectError): GatewayError {
  const [detail] = error.findDetails(GatewayErrorSchema);
  if (detail === undefined) {
    throw new Error(`expected a GatewayError detail on: ${error.message}`);
  }
  return detail;
}

/**
 * Returns V8's `gc` function: `global.gc` when Node runs with
 * `--expose-gc`, else one exposed at run time, which works for contexts
 * created after the flag is set.
 */
export function garbageCollector(): () => void {
  const exposed = (globalThis as { gc?: () => void }).gc;
  if (exposed !== undefined) {
    return exposed;
  }
  v8.setFlagsFromString("--expose-gc");
  return vm.runInNewContext("gc") as () => void;
}
