import type { IncomingHttpHeaders } from "node:http";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, expect, test } from "vitest";
import { capDeadlineHeaders } from "../../src/rpc/deadline-headers.js";
import { ScriptedGateway } from "../helpers/scripted-gateway.js";
import { startTestService, type TestService } from "../helpers/service.js";

// The service's Connect handler sets no timer for a deadline beyond 2^31-1 ms.
// connect-node, which serves gRPC-Web, gRPC with JSON and Connect GET, passes
// such a deadline to setTimeout, and Node then fires the timer after 1 ms, so
// the service caps the deadline headers of the requests connect-node serves.

let service: TestService;
let gateway: ScriptedGateway;
let integrationId: string;

beforeAll(async () => {
  service = await startTestService();
  gateway = await ScriptedGateway.start();
  // The reply comes after a deadline that fired at 1 ms would have ended the call.
  gateway.on("/slow", async () => {
    await sleep(20);
    return { json: { data: { id: "gw-1", date: "2026-01-01T00:00:00Z" } } };
  });
  const reply = await fetch(`${service.baseUrl}/smsgateway.v1.IntegrationService/ConfigureIntegration`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      integration: { baseUrl: gateway.url("/slow"), apiKeyHeader: "X-API-KEY", apiKey: "long-deadline-key", defaultSender: "Acme" },
    }),
  });
  integrationId = ((await reply.json()) as { integration: { id: string } }).integration.id;
});

afterAll(async () => {
  await service.stop();
  await gateway.close();
});

function grpcWebFrame(message: unknown): Buffer {
  const json = Buffer.from(JSON.stringify(message));
  const frame = Buffer.alloc(5 + json.length);
  frame.writeUInt32BE(json.length, 1);
  json.copy(frame, 5);
  return frame;
}

test.each(["99999999H", "2147484S"])("gRPC-Web send with grpc-timeout %s", async (timeout) => {
  const response = await fetch(`${service.baseUrl}/smsgateway.v1.SmsService/SendSms`, {
    method: "POST",
    headers: { "content-type": "application/grpc-web+json", "grpc-timeout": timeout },
    body: grpcWebFrame({ integrationId, to: "+15550001111", content: "long deadline" }),
  });
  const text = Buffer.from(await response.arrayBuffer()).toString("latin1");

  expect(text).toContain("grpc-status: 0");
});

test("long grpc-timeout keeps circuit closed", async () => {
  for (let i = 0; i < 6; i++) {
    await fetch(`${service.baseUrl}/smsgateway.v1.SmsService/SendSms`, {
      method: "POST",
      headers: { "content-type": "application/grpc-web+json", "grpc-timeout": "99999999H" },
      body: grpcWebFrame({ integrationId, to: "+15550001111", content: `long deadline ${i}` }),
    });
  }
  const response = await fetch(`${service.baseUrl}/smsgateway.v1.SmsService/SendSms`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ integrationId, to: "+15550001111", content: "after" }),
  });

  expect(((await response.json()) as { code?: string }).code).toBeUndefined();
});

test("Connect GET with a ten-digit timeout", async () => {
  const query = new URLSearchParams({ connect: "v1", encoding: "json", message: JSON.stringify({ id: integrationId }) });

  const response = await fetch(`${service.baseUrl}/smsgateway.v1.IntegrationService/GetIntegration?${query}`, {
    headers: { "connect-timeout-ms": "9999999999" },
  });

  expect(response.status).toBe(200);
});

test.each([
  { headers: { "connect-timeout-ms": "9999999999" }, capped: { "connect-timeout-ms": "2147483647" } },
  { headers: { "connect-timeout-ms": "2147483647" }, capped: { "connect-timeout-ms": "2147483647" } },
  { headers: { "connect-timeout-ms": "2147483648" }, capped: { "connect-timeout-ms": "2147483647" } },
  { headers: { "connect-timeout-ms": "12345678901" }, capped: { "connect-timeout-ms": "12345678901" } },
  { headers: { "connect-timeout-ms": "soon" }, capped: { "connect-timeout-ms": "soon" } },
  { headers: { "grpc-timeout": "99999999H" }, capped: { "grpc-timeout": "2147483S" } },
  { headers: { "grpc-timeout": "2147484S" }, capped: { "grpc-timeout": "2147483S" } },
  { headers: { "grpc-timeout": "2147483S" }, capped: { "grpc-timeout": "2147483S" } },
  { headers: { "grpc-timeout": "99999999n" }, capped: { "grpc-timeout": "99999999n" } },
  { headers: { "grpc-timeout": "999999999S" }, capped: { "grpc-timeout": "999999999S" } },
])("caps $headers", ({ headers, capped }) => {
  const copy: IncomingHttpHeaders = { ...headers };

  capDeadlineHeaders(copy);

  expect(copy).toEqual(capped);
});
