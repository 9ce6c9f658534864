import type { MessageInitShape } from "@bufbuild/protobuf";
import { durationMs } from "@bufbuild/protobuf/wkt";
import { ConnectError, createClient, type CallOptions, type Client } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { expect } from "vitest";

import { ErrorInfoSchema, RetryInfoSchema, type ErrorInfo } from "../../gen/smsgateway/v1/errors_pb.js";
import { IntegrationService } from "../../gen/smsgateway/v1/integration_service_pb.js";
import type { IntegrationSchema } from "../../gen/smsgateway/v1/integration_pb.js";
import { SmsService, type SendSmsResponse } from "../../gen/smsgateway/v1/sms_service_pb.js";
import type { Config } from "../../src/config/settings.js";
import type { IntegrationFlowState } from "../../src/flow/send-gate.js";
import { ScriptedGateway, type ScriptedReply } from "../helpers/scripted-gateway.js";
import { startTestService, type TestService } from "../helpers/service.js";

/** Connect clients of one test service. */
export interface ServiceClients {
  integrations: Client<typeof IntegrationService>;
  sms: Client<typeof SmsService>;
}

export function connectClients(baseUrl: string): ServiceClients {
  const transport = createConnectTransport({ baseUrl, httpVersion: "1.1" });
  return { integrations: createClient(IntegrationService, transport), sms: createClient(SmsService, transport) };
}

/** Gateway reply that accepts the SMS. */
export const ACCEPTED: ScriptedReply = { json: { data: { id: "msg-1", date: "2026-01-02T03:04:05Z" } } };

type IntegrationInit = MessageInitShape<typeof IntegrationSchema>;

/** A test service with its own scripted gateway and Connect clients. */
export interface FlowTestBed {
  service: TestService;
  gateway: ScriptedGateway;
  clients: ServiceClients;
  /** Creates or replaces integration `id`, sending to `baseUrl`. */
  configure(id: string, baseUrl: string, overrides?: IntegrationInit): Promise<void>;
  /** Sends one SMS through the integration over Connect. */
  send(integrationId: string, options?: CallOptions): Promise<SendSmsResponse>;
  /** Returns the send gate's state of the integration, undefined when it keeps none. */
  flowState(integrationId: string): IntegrationFlowState | undefined;
  stop(): Promise<void>;
}

/** Starts a service with the given settings, a scripted gateway and Connect clients. */
export async function startFlowTestBed(overrides: Partial<Config>): Promise<FlowTestBed> {
  const service = await startTestService(overrides);
  const gateway = await ScriptedGateway.start();
  const clients = connectClients(service.baseUrl);
  return {
    service,
    gateway,
    clients,
    async configure(id, baseUrl, fields = {}) {
      await clients.integrations.configureIntegration({ integration: integrationFor(id, baseUrl, fields), allowMissing: true });
    },
    send: (integrationId, options) => clients.sms.sendSms({ integrationId, to: "+15550001", content: "hello" }, options),
    flowState: (integrationId) =>
      service.app.sendGate.flowStates().find((state) => state.integrationId === integrationId),
    async stop() {
      await service.stop();
      await gateway.close();
    },
  };
}

/** Returns integration fields for a gateway URL, with the given id and overrides. */
export function integrationFor(
  id: string,
  baseUrl: string,
  overrides: IntegrationInit = {},
): IntegrationInit {
  return { id, baseUrl, apiKeyHeader: "X-API-KEY", apiKey: "key-0123456789", defaultSender: "Acme", ...overrides };
}

/** Creates a promise that the test resolves when it chooses. */
export function deferred(): { promise: Promise<void>; resolve(): void } {
  let resolve!: () => void;
  const promise = new Promise<void>((done) => {
    resolve = done;
  });
  return { promise, resolve };
}

/** Waits until `condition` holds, polling; fails after `timeoutMs`, a generous bound for slow machines. */
export async function waitFor(condition: () => boolean, description: string, timeoutMs = 10_000): Promise<void> {
  const started = Date.now();
  while (!condition()) {
    if (Date.now() - started > timeoutMs) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${description}`);
    }
    await sleep(10);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Awaits a call that must fail and returns its error. */
export async function rejectionOf(promise: Promise<unknown>): Promise<ConnectError> {
  const outcome = await promise.then(
    () => undefined,
    (error: unknown) => ConnectError.from(error),
  );
  if (outcome === undefined) {
    throw new Error("expected the call to fail, but it succeeded");
  }
  return outcome;
}

/** Returns the single ErrorInfo detail of an error. */
export function errorInfoOf(error: ConnectError): ErrorInfo {
  const infos = error.findDetails(ErrorInfoSchema);
  expect(infos).toHaveLength(1);
  return infos[0]!;
}

/** Returns the retry delay of an error's RetryInfo detail, in milliseconds. */
export function retryDelayMsOf(error: ConnectError): number {
  const [retry] = error.findDetails(RetryInfoSchema);
  expect(retry?.retryDelay).toBeDefined();
  return durationMs(retry!.retryDelay!);
}
