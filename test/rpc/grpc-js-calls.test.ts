import http from "node:http";
import type { AddressInfo } from "node:net";
import net from "node:net";
import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { afterAll, afterEach, beforeAll, expect, test } from "vitest";
import { IntegrationService } from "../../gen/smsgateway/v1/integration_service_pb.js";
import {
  SendSmsRequestSchema,
  SendSmsResponseSchema,
  type SendSmsResponse,
} from "../../gen/smsgateway/v1/sms_service_pb.js";
import { startTestService, type TestService } from "../helpers/service.js";

const SEND_SMS = "/smsgateway.v1.SmsService/SendSms";

/** A gateway that keeps every request open until the test replies, and records when its connection closes. */
class HoldingGateway {
  readonly held: { response: http.ServerResponse; closed: Promise<void> }[] = [];
  private waiters: (() => void)[] = [];
  private readonly server = http.createServer((request, response) => {
    const closed = new Promise<void>((resolve) => request.socket.once("close", () => resolve()));
    request.resume();
    this.held.push({ response, closed });
    for (const wake of this.waiters.splice(0)) {
      wake();
    }
  });

  async start(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/sms`;
  }

  /** Resolves when `count` requests have arrived in total. */
  async received(count: number): Promise<void> {
    while (this.held.length < count) {
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  close(): void {
    this.server.closeAllConnections();
    this.server.close();
  }
}

let service: TestService;
let gateway: HoldingGateway;
let gatewayUrl: string;
let integrationId: string;
let client: grpc.Client;

/** Stores an integration that sends to the holding gateway, and returns its id. */
async function configureHoldingIntegration(baseUrl: string): Promise<string> {
  const integrations = createClient(IntegrationService, createGrpcTransport({ baseUrl }));
  const { integration } = await integrations.configureIntegration({
    integration: { baseUrl: gatewayUrl, apiKeyHeader: "X-API-KEY", apiKey: "hold-key-0001", defaultSender: "Acme" },
  });
  return integration?.id ?? "";
}

beforeAll(async () => {
  service = await startTestService({ maxRequestBytes: 1024 });
  gateway = new HoldingGateway();
  gatewayUrl = await gateway.start();
  integrationId = await configureHoldingIntegration(service.baseUrl);
});

afterAll(async () => {
  await service.stop();
  gateway.close();
});

afterEach(() => {
  client?.close();
});

interface Outcome {
  error: grpc.ServiceError | null;
  response?: SendSmsResponse;
  headers?: grpc.Metadata;
}

type SendInit = MessageInitShape<typeof SendSmsRequestSchema>;

/** Starts SendSms with grpc-js; `request` may be raw bytes to send as the message. */
function sendSms(target: string, request: SendInit | Buffer, options: grpc.CallOptions = {}) {
  client = new grpc.Client(target, grpc.credentials.createInsecure());
  let headers: grpc.Metadata | undefined;
  let call: grpc.ClientUnaryCall | undefined;
  const outcome = new Promise<Outcome>((resolve) => {
    call = client.makeUnaryRequest(
      SEND_SMS,
      (message: SendInit | Buffer) =>
        Buffer.isBuffer(message) ? message : Buffer.from(toBinary(SendSmsRequestSchema, create(SendSmsRequestSchema, message))),
      (bytes: Buffer) => fromBinary(SendSmsResponseSchema, bytes),
      request,
      new grpc.Metadata(),
      options,
      (error, response) => resolve({ error, response, headers }),
    );
    call.on("metadata", (metadata) => {
      headers = metadata;
    });
  });
  return { outcome, cancel: () => call?.cancel() };
}

function target(baseUrl: string): string {
  return new URL(baseUrl).host;
}

function rpcLine(code: string): Record<string, unknown> | undefined {
  return service.logLines.findLast((line) => line.procedure === "smsgateway.v1.SmsService/SendSms" && line.code === code);
}

test("reply carries the request id header", async () => {
  const call = sendSms(target(service.baseUrl), { integrationId, to: "+15550001111", content: "hello" });
  await gateway.received(1);
  const held = gateway.held[0]!;
  held.response.writeHead(200, { "content-type": "application/json" });
  held.response.end(JSON.stringify({ data: { id: "gw-1", date: "2026-01-02T03:04:05Z" } }));

  const { error, response, headers } = await call.outcome;

  expect(error).toBeNull();
  expect(response?.id).toBe("gw-1");
  expect(String(headers?.get("x-request-id")[0] ?? "")).not.toBe("");
  expect(rpcLine("OK")?.server).toBe("grpc-js");
});

test("deadline aborts the gateway request", async () => {
  const before = gateway.held.length;
  const call = sendSms(target(service.baseUrl), { integrationId, to: "+15550001112", content: "slow" }, { deadline: Date.now() + 300 });
  await gateway.received(before + 1);

  const { error } = await call.outcome;
  await gateway.held[before]!.closed;

  expect(error?.code).toBe(grpc.status.DEADLINE_EXCEEDED);
});

test("cancel aborts the gateway request", async () => {
  const before = gateway.held.length;
  const call = sendSms(target(service.baseUrl), { integrationId, to: "+15550001113", content: "cancel me" });
  await gateway.received(before + 1);

  call.cancel();
  const { error } = await call.outcome;
  await gateway.held[before]!.closed;

  expect(error?.code).toBe(grpc.status.CANCELLED);
  await expect.poll(() => rpcLine("CANCELLED")?.server, { timeout: 10_000 }).toBe("grpc-js");
});

test("undecodable request is INVALID_ARGUMENT", async () => {
  // Field 1 announces 100 bytes of string that never come.
  const { error } = await sendSms(target(service.baseUrl), Buffer.from([0x0a, 100, 0x41])).outcome;

  expect(error?.code).toBe(grpc.status.INVALID_ARGUMENT);
  expect(error?.details).toMatch(/could not be decoded/);
  expect(rpcLine("INVALID_ARGUMENT")?.server).toBe("grpc-js");
});

test("request over MAX_REQUEST_BYTES is RESOURCE_EXHAUSTED", async () => {
  const { error } = await sendSms(target(service.baseUrl), { integrationId, to: "+15550001114", content: "x".repeat(2_000) }).outcome;

  expect(error?.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
});

test("close lets a grpc-js call in progress finish", async () => {
  // A service with a data folder of its own, because the lock of a data folder admits one service at a time.
  const closing = await startTestService();
  const closingIntegrationId = await configureHoldingIntegration(closing.baseUrl);
  const before = gateway.held.length;
  const call = sendSms(target(closing.baseUrl), { integrationId: closingIntegrationId, to: "+15550001115", content: "during shutdown" });
  await gateway.received(before + 1);

  const closed = closing.app.close(10_000);
  const held = gateway.held[before]!;
  held.response.writeHead(200, { "content-type": "application/json" });
  held.response.end(JSON.stringify({ data: { id: "gw-late", date: "2026-01-02T03:04:05Z" } }));
  const { error, response } = await call.outcome;
  await closed;

  expect(error).toBeNull();
  expect(response?.id).toBe("gw-late");
  const refused = await new Promise<boolean>((resolve) => {
    const socket = net.connect(closing.app.server.port, "127.0.0.1");
    socket.once("connect", () => {
      socket.destroy();
      resolve(false);
    });
    socket.once("error", () => resolve(true));
  });
  expect(refused).toBe(true);
  await closing.stop();
});
