import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { IntegrationService } from "../../gen/smsgateway/v1/integration_service_pb.js";
import {
  GetIntegrationRequestSchema,
  GetIntegrationResponseSchema,
} from "../../gen/smsgateway/v1/integration_service_pb.js";
import { SmsService } from "../../gen/smsgateway/v1/sms_service_pb.js";
import { ScriptedGateway } from "../helpers/scripted-gateway.js";
import { startTestService, type TestService } from "../helpers/service.js";

let service: TestService;
let gateway: ScriptedGateway;
let integrationId: string;

beforeAll(async () => {
  service = await startTestService();
  gateway = await ScriptedGateway.start();
  gateway.on("/sms", { json: { data: { id: "gw-1", date: "2026-01-02T03:04:05Z" } } });
  const client = createClient(IntegrationService, createConnectTransport({ baseUrl: service.baseUrl, httpVersion: "1.1" }));
  const { integration } = await client.configureIntegration({
    integration: { baseUrl: gateway.url(), apiKeyHeader: "X-API-KEY", apiKey: "request-id-key-1", defaultSender: "Acme" },
  });
  integrationId = integration?.id ?? "";
});

afterAll(async () => {
  await service.stop();
  await gateway.close();
});

/** A protocol, and how to read the response's x-request-id after a GetIntegration call. */
interface Protocol {
  name: string;
  /** Calls GetIntegration with the given request headers; returns the x-request-id the response carried. */
  getIntegration(id: string, headers: Record<string, string>): Promise<{ requestId: string | null; failed: boolean }>;
}

function connectProtocol(name: string, makeTransport: (baseUrl: string) => Transport): Protocol {
  return {
    name,
    async getIntegration(id, headers) {
      const client = createClient(IntegrationService, makeTransport(service.baseUrl));
      let requestId: string | null = null;
      try {
        await client.getIntegration({ id }, { headers, onHeader: (header) => (requestId = header.get("x-request-id")) });
        return { requestId, failed: false };
      } catch (error) {
        return { requestId: ConnectError.from(error).metadata.get("x-request-id"), failed: true };
      }
    },
  };
}

const grpcJsProtocol: Protocol = {
  name: "gRPC (grpc-js)",
  getIntegration(id, headers) {
    const client = new grpc.Client(new URL(service.baseUrl).host, grpc.credentials.createInsecure());
    const metadata = new grpc.Metadata();
    for (const [name, value] of Object.entries(headers)) {
      metadata.set(name, value);
    }
    return new Promise((resolve) => {
      let requestId: string | null = null;
      const call = client.makeUnaryRequest(
        "/smsgateway.v1.IntegrationService/GetIntegration",
        (message: { id: string }) => Buffer.from(toBinary(GetIntegrationRequestSchema, create(GetIntegrationRequestSchema, message))),
        (bytes: Buffer) => fromBinary(GetIntegrationResponseSchema, bytes),
        { id },
        metadata,
        (error) => {
          client.close();
          const value = error?.metadata.get("x-request-id")[0];
          resolve({ requestId: value === undefined ? requestId : String(value), failed: error !== null });
        },
      );
      call.on("metadata", (received: grpc.Metadata) => {
        requestId = String(received.get("x-request-id")[0] ?? "") || null;
      });
    });
  },
};

const PROTOCOLS: Protocol[] = [
  connectProtocol("Connect over HTTP/1.1", (baseUrl) => createConnectTransport({ baseUrl, httpVersion: "1.1" })),
  connectProtocol("Connect over HTTP/2", (baseUrl) => createConnectTransport({ baseUrl, httpVersion: "2" })),
  connectProtocol("gRPC-Web over HTTP/1.1", (baseUrl) => createGrpcWebTransport({ baseUrl, httpVersion: "1.1" })),
  connectProtocol("gRPC-Web over HTTP/2", (baseUrl) => createGrpcWebTransport({ baseUrl, httpVersion: "2" })),
  grpcJsProtocol,
];

describe.each(PROTOCOLS)("request id over $name", (protocol) => {
  test("echoes the caller's id", async () => {
    const result = await protocol.getIntegration(integrationId, { "x-request-id": "caller-id-0001" });

    expect(result.failed).toBe(false);
    expect(result.requestId).toBe("caller-id-0001");
  });

  test("echoes it on errors", async () => {
    const result = await protocol.getIntegration("int_missing", { "x-request-id": "caller-id-0002" });

    expect(result.failed).toBe(true);
    expect(result.requestId).toBe("caller-id-0002");
  });

  test("assigns one when missing or invalid", async () => {
    const missing = await protocol.getIntegration(integrationId, {});
    const invalid = await protocol.getIntegration(integrationId, { "x-request-id": "has spaces in it" });

    expect(missing.requestId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    expect(invalid.requestId).toMatch(/^[0-9a-f]{8}-/);
    expect(invalid.requestId).not.toBe(missing.requestId);
  });
});

describe("request id in logs and plain HTTP", () => {
  test("every log line of a send has it", async () => {
    const sms = createClient(SmsService, createConnectTransport({ baseUrl: service.baseUrl, httpVersion: "2" }));
    await sms.sendSms({ integrationId, to: "+15550001111", content: "id check" }, { headers: { "x-request-id": "send-trace-42" } });

    const messages = service.logLines.filter((line) => line.requestId === "send-trace-42").map((line) => line.msg);
    expect(messages).toEqual(expect.arrayContaining(["gateway replied", "SMS accepted by the gateway", "rpc finished"]));
    expect(messages.at(-1)).toBe("rpc finished");
    for (const line of service.logLines.filter((entry) => "procedure" in entry)) {
      expect(line.requestId).toEqual(expect.any(String));
    }
    expect(service.logLines.filter((line) => line.msg === "rpc finished" && line.requestId === "send-trace-42")).toHaveLength(1);
  });

  test("send's last line names the integration and message", async () => {
    const sms = createClient(SmsService, createConnectTransport({ baseUrl: service.baseUrl, httpVersion: "2" }));
    await sms.sendSms({ integrationId, to: "+15550001111", content: "id check" }, { headers: { "x-request-id": "send-trace-43" } });

    const line = service.logLines.find((entry) => entry.msg === "rpc finished" && entry.requestId === "send-trace-43");
    expect(line).toMatchObject({ integrationId, messageId: "gw-1", replayed: false, code: "OK" });
  });

  test("lines outside a call have none", () => {
    const startup = service.logLines.find((line) => line.msg === "applied database migration");

    expect(startup).toBeDefined();
    expect(startup).not.toHaveProperty("requestId");
  });

  test("plain HTTP responses carry it", async () => {
    const health = await fetch(`${service.baseUrl}/healthz`, { headers: { "x-request-id": "probe-7" } });
    const rejected = await fetch(`${service.baseUrl}/smsgateway.v1.IntegrationService/GetIntegration`, {
      method: "POST",
      headers: { "content-type": "text/plain" },
      body: "not a request",
    });

    expect(health.headers.get("x-request-id")).toBe("probe-7");
    expect(rejected.status).toBe(415);
    expect(rejected.headers.get("x-request-id")).toMatch(/^[0-9a-f]{8}-/);
  });
});
