import { randomUUID } from "node:crypto";
import http2 from "node:http2";
import { create, toBinary } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { IntegrationService } from "../../gen/smsgateway/v1/integration_service_pb.js";
import { SendSmsRequestSchema, SmsService } from "../../gen/smsgateway/v1/sms_service_pb.js";
import { startLocalGateway } from "../../src/tools/local-gateway.js";
import { CLIENT_KINDS } from "../helpers/clients.js";
import { startTestService, type TestService } from "../helpers/service.js";

let service: TestService;
let gateway: Awaited<ReturnType<typeof startLocalGateway>>;
let integrationId: string;

beforeAll(async () => {
  service = await startTestService();
  gateway = await startLocalGateway({ host: "127.0.0.1", port: 0 }, () => undefined);
  const integrations = createClient(IntegrationService, createGrpcTransport({ baseUrl: service.baseUrl }));
  const { integration } = await integrations.configureIntegration({
    integration: { baseUrl: `${gateway.url}/sms`, apiKeyHeader: "X-API-KEY", apiKey: "route-key-0001", defaultSender: "Acme" },
  });
  integrationId = integration?.id ?? "";
});

afterAll(async () => {
  await service.stop();
  gateway.server.closeAllConnections();
  gateway.server.close();
});

/** Returns the `server` field of the log line of the call with this request id. */
function servedBy(requestId: string): unknown {
  const line = service.logLines.find((entry) => entry.requestId === requestId && entry.msg === "rpc finished");
  return line?.server;
}

const SEND = { to: "+15551230000", content: "routing check" };

describe("first request of a connection picks the server", () => {
  const expectations: Record<string, string> = {
    "Connect over HTTP/1.1": "connect-unary",
    "Connect over HTTP/2": "connect-unary",
    "Connect JSON over HTTP/1.1": "connect-unary",
    "gRPC-Web over HTTP/1.1": "connect-node",
    "gRPC-Web over HTTP/2": "connect-node",
    "grpc-js (gRPC over HTTP/2)": "grpc-js",
  };

  test.each(CLIENT_KINDS.map((kind) => ({ kind, expected: expectations[kind.name] })))("$kind.name", async ({ kind, expected }) => {
    const sms = kind.create(SmsService, service.baseUrl);
    const requestId = `route-${randomUUID()}`;
    try {
      const sent = await sms.client.sendSms({ integrationId, ...SEND }, { headers: { "x-request-id": requestId } });
      expect(sent.id).toMatch(/^msg_/);
    } finally {
      sms.close();
    }

    expect(expected).toBeDefined();
    expect(servedBy(requestId)).toBe(expected);
  });

  test.each([
    { name: "Connect's gRPC transport with protobuf", binary: true, expected: "grpc-js" },
    { name: "Connect's gRPC transport with JSON", binary: false, expected: "connect-node" },
  ])("$name", async ({ binary, expected }) => {
    const sms = createClient(SmsService, createGrpcTransport({ baseUrl: service.baseUrl, useBinaryFormat: binary }));
    const requestId = `route-${randomUUID()}`;

    const sent = await sms.sendSms({ integrationId, ...SEND }, { headers: { "x-request-id": requestId } });

    expect(sent.id).toMatch(/^msg_/);
    expect(servedBy(requestId)).toBe(expected);
  });
});

/** One gRPC call on an HTTP/2 session; returns the HTTP status and the grpc-status trailer. */
async function rawGrpcCall(
  session: http2.ClientHttp2Session,
  path: string,
  requestId: string,
  contentType = "application/grpc",
): Promise<{ status: number; grpcStatus: string }> {
  const message = toBinary(SendSmsRequestSchema, create(SendSmsRequestSchema, { integrationId, ...SEND }));
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(message.length, 1);

  const stream = session.request({
    ":method": "POST",
    ":path": path,
    "content-type": contentType,
    te: "trailers",
    "x-request-id": requestId,
  });
  stream.end(Buffer.concat([prefix, message]));

  return new Promise((resolve, reject) => {
    let status = 0;
    let grpcStatus = "";
    stream.on("response", (headers) => {
      status = Number(headers[":status"]);
      grpcStatus = String(headers["grpc-status"] ?? "");
    });
    stream.on("trailers", (trailers) => {
      grpcStatus = String(trailers["grpc-status"] ?? grpcStatus);
    });
    stream.on("data", () => undefined);
    stream.on("end", () => resolve({ status, grpcStatus }));
    stream.on("error", reject);
  });
}

describe("later requests stay on the first request's server", () => {
  const SEND_SMS = "/smsgateway.v1.SmsService/SendSms";

  test("first request to a smsgateway.v1 method", async () => {
    const session = http2.connect(service.baseUrl);
    try {
      const first = `route-${randomUUID()}`;
      const second = `route-${randomUUID()}`;

      expect((await rawGrpcCall(session, SEND_SMS, first)).grpcStatus).toBe("0");
      expect((await rawGrpcCall(session, SEND_SMS, second)).grpcStatus).toBe("0");

      expect(servedBy(first)).toBe("grpc-js");
      expect(servedBy(second)).toBe("grpc-js");
    } finally {
      session.close();
    }
  });

  test.each(["application/grpc-web+proto", "application/grpc-web", "application/grpc+json"])(
    "%s after gRPC is rejected unrun",
    async (contentType) => {
      const session = http2.connect(service.baseUrl);
      try {
        const first = `route-${randomUUID()}`;
        const second = `route-${randomUUID()}`;

        expect((await rawGrpcCall(session, SEND_SMS, first)).grpcStatus).toBe("0");
        const rejected = await rawGrpcCall(session, SEND_SMS, second, contentType);

        expect(servedBy(first)).toBe("grpc-js");
        expect(rejected.status).toBe(415);
        expect(service.logLines.filter((line) => line.requestId === second).map((line) => line.msg)).toEqual(["rpc rejected"]);
      } finally {
        session.close();
      }
    },
  );

  test.each([
    { contentType: "application/grpc+proto; charset=utf-8", expected: "grpc-js" },
    { contentType: "Application/GRPC", expected: "connect-node" },
  ])("first request as $contentType goes to $expected", async ({ contentType, expected }) => {
    const session = http2.connect(service.baseUrl);
    try {
      const requestId = `route-${randomUUID()}`;

      const sent = await rawGrpcCall(session, SEND_SMS, requestId, contentType);

      expect(sent.grpcStatus).toBe("0");
      expect(servedBy(requestId)).toBe(expected);
    } finally {
      session.close();
    }
  });

  test("first request to a path grpc-js does not serve", async () => {
    const session = http2.connect(service.baseUrl);
    try {
      const unknown = await rawGrpcCall(session, "/example.unknown.v1.UnknownService/Call", `route-${randomUUID()}`);
      const requestId = `route-${randomUUID()}`;
      const sent = await rawGrpcCall(session, SEND_SMS, requestId);

      // connect-node replies to an unknown path with HTTP 404, which gRPC clients read as UNIMPLEMENTED.
      expect(unknown.status).toBe(404);
      expect(sent.grpcStatus).toBe("0");
      expect(servedBy(requestId)).toBe("connect-node");
    } finally {
      session.close();
    }
  });
});
