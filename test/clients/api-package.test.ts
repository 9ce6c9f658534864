import { create, createRegistry, fromBinary, toBinary } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { SendSmsRequestSchema, SendSmsResponseSchema, SmsService, type SendSmsResponse } from "@smsgateway/api/smsgateway/v1/sms_service_pb";
import { IntegrationService } from "@smsgateway/api/smsgateway/v1/integration_service_pb";
import { file_smsgateway_v1_errors } from "@smsgateway/api/smsgateway/v1/errors_pb";
import { afterAll, beforeAll, expect, test } from "vitest";
import { startLocalGateway } from "../../src/tools/local-gateway.js";
import { startTestService, type TestService } from "../helpers/service.js";

// These tests follow the README's client snippets, importing the generated
// code through its package name as another project would.

let service: TestService;
let gateway: Awaited<ReturnType<typeof startLocalGateway>>;

beforeAll(async () => {
  service = await startTestService();
  gateway = await startLocalGateway({ host: "127.0.0.1", port: 0 }, () => undefined);
  const transport = createConnectTransport({ baseUrl: service.baseUrl, httpVersion: "2" });
  await createClient(IntegrationService, transport).configureIntegration({
    integration: { id: "demo", baseUrl: `${gateway.url}/sms`, apiKeyHeader: "X-API-KEY", apiKey: "demo-key-0123456789", defaultSender: "Acme" },
    allowMissing: true,
  });
});

afterAll(async () => {
  await service.stop();
  gateway.server.close();
});

test("package over Connect", async () => {
  const transport = createConnectTransport({ baseUrl: service.baseUrl, httpVersion: "2" });
  const sms = createClient(SmsService, transport);

  const sent = await sms.sendSms({ integrationId: "demo", to: "+15551234567", content: "Hello" });

  expect(sent.id).toMatch(/^msg_/);
});

test.each([
  { name: "protobuf, connect-node's default", options: {} },
  { name: "JSON with the error registry", options: { useBinaryFormat: false, jsonOptions: { registry: createRegistry(file_smsgateway_v1_errors) } } },
])("batch with a failed message over Connect $name", async ({ options }) => {
  const sms = createClient(SmsService, createConnectTransport({ baseUrl: service.baseUrl, httpVersion: "2", ...options }));

  const response = await sms.sendSmsBatch({
    integrationId: "demo",
    messages: [
      { to: "+15551234567", content: "Hello" },
      { to: "+15551234567", content: "Hello", passthrough: { headers: { Host: "elsewhere" } } },
    ],
  });

  expect(response.results.map((result) => result.outcome.case)).toEqual(["response", "error"]);
});

test("JSON batch errors need the registry", async () => {
  const sms = createClient(SmsService, createConnectTransport({ baseUrl: service.baseUrl, httpVersion: "2", useBinaryFormat: false }));

  const batch = sms.sendSmsBatch({
    integrationId: "demo",
    messages: [{ to: "+15551234567", content: "Hello", passthrough: { headers: { Host: "elsewhere" } } }],
  });

  await expect(batch).rejects.toThrow("is not in the type registry");
});

test("package over grpc-js", async () => {
  const client = new grpc.Client(`127.0.0.1:${service.app.server.port}`, grpc.credentials.createInsecure());
  const request = create(SendSmsRequestSchema, { integrationId: "demo", to: "+15551234567", content: "Hello" });

  const response = await new Promise<SendSmsResponse | undefined>((resolve, reject) => {
    client.makeUnaryRequest(
      "/smsgateway.v1.SmsService/SendSms",
      (message: typeof request) => Buffer.from(toBinary(SendSmsRequestSchema, message)),
      (bytes: Buffer) => fromBinary(SendSmsResponseSchema, bytes),
      request,
      (error, reply) => (error ? reject(error) : resolve(reply)),
    );
  });
  client.close();

  expect(response?.id).toMatch(/^msg_/);
});
