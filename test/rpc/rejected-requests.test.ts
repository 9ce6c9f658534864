import { randomUUID } from "node:crypto";
import http2 from "node:http2";
import net from "node:net";
import { create, toBinary, type DescMethodUnary } from "@bufbuild/protobuf";
import { BytesValueSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { Health } from "../../gen/grpc/health/v1/health_pb.js";
import { IntegrationService } from "../../gen/smsgateway/v1/integration_service_pb.js";
import { SendSmsRequestSchema, SmsService } from "../../gen/smsgateway/v1/sms_service_pb.js";
import { eventually } from "../helpers/eventually.js";
import { ScriptedGateway } from "../helpers/scripted-gateway.js";
import { sample } from "../helpers/prometheus.js";
import { startTestService, type TestService } from "../helpers/service.js";
import { createApiKey } from "../security/security-fixtures.js";

// Requests that a server of the port rejects before a call starts must each
// leave one log line and one count in smsgateway_rpcs_total. Requests whose
// message cannot be read become calls that fail through the pipeline, on
// every server.

const MAX_REQUEST_BYTES = 1024;
const SEND_SMS = "/smsgateway.v1.SmsService/SendSms";
const PEER = /^127\.0\.0\.1:\d+$/;

let service: TestService;
let secured: TestService;
const sender = createApiKey("sender", "sms:send");

beforeAll(async () => {
  service = await startTestService({ maxRequestBytes: MAX_REQUEST_BYTES });
  secured = await startTestService({ maxRequestBytes: MAX_REQUEST_BYTES, apiKeys: sender.entry });
});

afterAll(async () => {
  await service.stop();
  await secured.stop();
});

/** The unary methods of `SmsService` and `IntegrationService` under other names or with a raw bytes input. */
const sendSmsNamed = (name: string) => ({ ...SmsService.method.sendSms, name }) as DescMethodUnary<typeof SendSmsRequestSchema, typeof SmsService.method.sendSms.output>;
const rawSendSms = { ...SmsService.method.sendSms, input: BytesValueSchema } as unknown as DescMethodUnary<typeof BytesValueSchema, typeof SmsService.method.sendSms.output>;
const rawGetIntegration = { ...IntegrationService.method.getIntegration, input: BytesValueSchema } as unknown as DescMethodUnary<
  typeof BytesValueSchema,
  typeof IntegrationService.method.getIntegration.output
>;

/** A string field whose bytes are not UTF-8, which protobuf cannot decode as SendSmsRequest or GetIntegrationRequest. */
const UNDECODABLE = { value: new Uint8Array([0xff, 0xfe, 0xfd]) };

/** A SendSms request larger than MAX_REQUEST_BYTES. */
const OVERSIZED = { integrationId: "int_missing", to: "+15550001111", content: "x".repeat(MAX_REQUEST_BYTES * 2) };

/** Sends one unary call through a Connect transport and returns its error. */
async function failure<I extends DescMethodUnary["input"], O extends DescMethodUnary["output"]>(
  transport: Transport,
  method: DescMethodUnary<I, O>,
  input: Parameters<Transport["unary"]>[4],
  headers: Record<string, string>,
): Promise<ConnectError> {
  try {
    await transport.unary(method as never, undefined, undefined, headers, input as never);
  } catch (error) {
    return ConnectError.from(error);
  }
  throw new Error("expected the call to fail");
}

/** Returns a gRPC transport whose connection a health check has sent to connect-node. */
async function connectNodeGrpcTransport(baseUrl: string): Promise<Transport> {
  const transport = createGrpcTransport({ baseUrl });
  await createClient(Health, transport).check({ service: "" });
  return transport;
}

/** Calls `path` with grpc-js, sending `message` as the request bytes. */
function grpcJsCall(client: grpc.Client, path: string, message: Uint8Array, headers: Record<string, string>): Promise<grpc.ServiceError | null> {
  const metadata = new grpc.Metadata();
  for (const [name, value] of Object.entries(headers)) {
    metadata.set(name, value);
  }
  return new Promise((resolve) => {
    client.makeUnaryRequest(
      path,
      (bytes: Uint8Array) => Buffer.from(bytes),
      (bytes: Buffer) => bytes,
      message,
      metadata,
      (error) => resolve(error),
    );
  });
}

/** Returns a grpc-js client whose connection a first SendSms has sent to grpc-js. */
async function grpcJsClient(baseUrl: string): Promise<grpc.Client> {
  const client = new grpc.Client(new URL(baseUrl).host, grpc.credentials.createInsecure());
  const first = toBinary(SendSmsRequestSchema, create(SendSmsRequestSchema, { integrationId: "int_missing", to: "+15550001111", content: "hi" }));
  await grpcJsCall(client, SEND_SMS, first, {});
  return client;
}

/** Clients whose calls connect-node serves, each with a transport on a new connection. */
const CONNECT_NODE_CLIENTS = [
  { name: "gRPC-Web over HTTP/1.1", transport: async (baseUrl: string) => createGrpcWebTransport({ baseUrl, httpVersion: "1.1" }) },
  { name: "gRPC-Web over HTTP/2", transport: async (baseUrl: string) => createGrpcWebTransport({ baseUrl, httpVersion: "2" }) },
  { name: "gRPC through connect-node", transport: connectNodeGrpcTransport },
];

async function rpcCount(target: TestService, labels: { service: string; method: string; code: string }): Promise<number> {
  const text = await (await fetch(`${target.baseUrl}/metrics`)).text();
  return sample(text, "smsgateway_rpcs_total", labels) ?? 0;
}

/** Runs `act` and returns by how much it raised the count of these labels. */
async function counted(labels: { service: string; method: string; code: string }, act: () => Promise<void>, target = service): Promise<number> {
  const before = await rpcCount(target, labels);
  await act();
  return (await rpcCount(target, labels)) - before;
}

function lineOf(requestId: string, target = service): Record<string, unknown> | undefined {
  const lines = target.logLines.filter((line) => line.requestId === requestId);
  expect(lines.length).toBeLessThanOrEqual(1);
  return lines[0];
}

describe("unknown method", () => {
  const unknownMethod = { service: "smsgateway.v1.SmsService", method: "unknown", code: "UNIMPLEMENTED" };

  test.each([
    { name: "Connect over HTTP/1.1", transport: (baseUrl: string) => createConnectTransport({ baseUrl, httpVersion: "1.1" }), server: "connect-unary", protocol: "connect", hint: true },
    { name: "Connect over HTTP/2", transport: (baseUrl: string) => createConnectTransport({ baseUrl, httpVersion: "2" }), server: "connect-unary", protocol: "connect", hint: true },
    { name: "gRPC-Web over HTTP/1.1", transport: (baseUrl: string) => createGrpcWebTransport({ baseUrl, httpVersion: "1.1" }), server: "connect-node", protocol: "grpc-web", hint: false },
    { name: "gRPC-Web over HTTP/2", transport: (baseUrl: string) => createGrpcWebTransport({ baseUrl, httpVersion: "2" }), server: "connect-node", protocol: "grpc-web", hint: false },
  ])("$name is logged and counted", async ({ transport, server, protocol, hint }) => {
    const requestId = `unknown-${randomUUID()}`;
    let error: ConnectError | undefined;

    const added = await counted(unknownMethod, async () => {
      error = await failure(transport(service.baseUrl), sendSmsNamed("SendSMS"), { to: "+15550001111" }, { "x-request-id": requestId });
    });

    expect(error?.code).toBe(Code.Unimplemented);
    if (hint) {
      expect(error?.rawMessage).toBe('smsgateway.v1.SmsService has no method "SendSMS"; did you mean SendSms?');
    }
    expect(added).toBe(1);
    expect(lineOf(requestId)).toMatchObject({
      msg: "rpc rejected",
      level: 30,
      path: "/smsgateway.v1.SmsService/SendSMS",
      server,
      protocol,
      code: "UNIMPLEMENTED",
      peer: expect.stringMatching(PEER),
      error: expect.stringContaining('has no method "SendSMS"; did you mean SendSms?'),
    });
  });

  test("grpc-js names the method", async () => {
    const client = await grpcJsClient(service.baseUrl);
    const requestId = `unknown-${randomUUID()}`;
    let error: grpc.ServiceError | null = null;
    try {
      const added = await counted(unknownMethod, async () => {
        error = await grpcJsCall(client, "/smsgateway.v1.SmsService/SendSMS", new Uint8Array(0), { "x-request-id": requestId });
      });

      expect(error).toMatchObject({ code: grpc.status.UNIMPLEMENTED, details: 'smsgateway.v1.SmsService has no method "SendSMS"; did you mean SendSms?' });
      expect(String((error as grpc.ServiceError | null)?.metadata.get("x-request-id")[0])).toBe(requestId);
      expect(added).toBe(1);
      expect(lineOf(requestId)).toMatchObject({ msg: "rpc rejected", server: "grpc-js", protocol: "grpc", code: "UNIMPLEMENTED", peer: expect.stringMatching(PEER) });
    } finally {
      client.close();
    }
  });

  test("health on a grpc-js connection says where to call it", async () => {
    const client = await grpcJsClient(service.baseUrl);
    const requestId = `health-${randomUUID()}`;
    const labels = { service: "grpc.health.v1.Health", method: "Check", code: "UNIMPLEMENTED" };
    try {
      let error: grpc.ServiceError | null = null;
      const added = await counted(labels, async () => {
        error = await grpcJsCall(client, "/grpc.health.v1.Health/Check", new Uint8Array(0), { "x-request-id": requestId });
      });

      expect((error as grpc.ServiceError | null)?.code).toBe(grpc.status.UNIMPLEMENTED);
      expect((error as grpc.ServiceError | null)?.details).toMatch(/on a connection of their own$/);
      expect(added).toBe(1);
      expect(lineOf(requestId)).toMatchObject({ msg: "rpc rejected", procedure: "grpc.health.v1.Health/Check", server: "grpc-js" });
    } finally {
      client.close();
    }
  });

  test("CONNECT on a grpc-js connection is 405", async () => {
    const session = http2.connect(service.baseUrl);
    const requestId = `connect-${randomUUID()}`;
    try {
      const first = session.request({ ":method": "POST", ":path": SEND_SMS, "content-type": "application/grpc", te: "trailers" });
      first.end(Buffer.from([0, 0, 0, 0, 0]));
      first.resume();
      await new Promise((resolve) => first.on("close", resolve));

      // A CONNECT request has no :path, which grpc-js would look up as an undefined method.
      const connect = session.request({ ":method": "CONNECT", ":authority": "127.0.0.1:9", "content-type": "application/grpc", "x-request-id": requestId });
      const reply = await new Promise<http2.IncomingHttpHeaders>((resolve, reject) => {
        connect.on("response", resolve);
        connect.on("error", reject);
        setTimeout(() => reject(new Error("no reply to the CONNECT request within 2 s")), 2_000).unref();
      });
      connect.close();

      expect(reply[":status"]).toBe(405);
      expect(lineOf(requestId)).toMatchObject({ msg: "rpc rejected", path: "", server: "grpc-js", code: "UNIMPLEMENTED", httpStatus: 405 });
      expect((await fetch(`${service.baseUrl}/healthz`)).status).toBe(200);
    } finally {
      session.close();
    }
  });

  test("unknown service counts as unknown", async () => {
    const transport = createGrpcTransport({ baseUrl: service.baseUrl });
    const method = { ...sendSmsNamed("Call"), parent: { ...SmsService, typeName: "example.v1.NoSuchService" } } as typeof SmsService.method.sendSms;
    const requestId = `unknown-${randomUUID()}`;
    let error: ConnectError | undefined;

    const added = await counted({ service: "unknown", method: "unknown", code: "UNIMPLEMENTED" }, async () => {
      error = await failure(transport, method, { to: "+15550001111" }, { "x-request-id": requestId });
    });

    expect(error?.code).toBe(Code.Unimplemented);
    expect(added).toBe(1);
    expect(lineOf(requestId)).toMatchObject({ msg: "rpc rejected", path: "/example.v1.NoSuchService/Call", server: "connect-node", protocol: "grpc", httpStatus: 404 });
  });
});

test("long unknown path is cut in the log", async () => {
  const requestId = `long-${randomUUID()}`;
  const path = `/example.v1.${"A".repeat(300)}/Call`;

  const reply = await fetch(`${service.baseUrl}${path}`, { method: "POST", headers: { "content-type": "application/grpc-web+proto", "x-request-id": requestId } });
  await reply.arrayBuffer();

  expect(reply.status).toBe(404);
  expect(lineOf(requestId)).toMatchObject({ msg: "rpc rejected", path: `${path.slice(0, 200)}...` });
});

describe("unsupported content type", () => {
  const sendSmsInvalid = { service: "smsgateway.v1.SmsService", method: "SendSms", code: "INVALID_ARGUMENT" };

  test("Connect handler logs its 415", async () => {
    const requestId = `type-${randomUUID()}`;
    let status = 0;

    const added = await counted(sendSmsInvalid, async () => {
      const reply = await fetch(`${service.baseUrl}${SEND_SMS}`, { method: "POST", headers: { "content-type": "text/plain", "x-request-id": requestId }, body: "hello" });
      status = reply.status;
      await reply.arrayBuffer();
    });

    expect(status).toBe(415);
    expect(added).toBe(1);
    expect(lineOf(requestId)).toMatchObject({
      msg: "rpc rejected",
      procedure: "smsgateway.v1.SmsService/SendSms",
      server: "connect-unary",
      protocol: "connect",
      code: "INVALID_ARGUMENT",
      error: expect.stringMatching(/^unsupported content type "text\/plain"/),
    });
  });

  test("connect-node logs its 415", async () => {
    const requestId = `type-${randomUUID()}`;
    let status = 0;

    const added = await counted(sendSmsInvalid, async () => {
      const reply = await fetch(`${service.baseUrl}${SEND_SMS}`, {
        method: "POST",
        headers: { "content-type": "application/grpc-web-text", "x-request-id": requestId },
        body: "AAAAAAA=",
      });
      status = reply.status;
      await reply.arrayBuffer();
    });

    expect(status).toBe(415);
    expect(added).toBe(1);
    expect(lineOf(requestId)).toMatchObject({ msg: "rpc rejected", server: "connect-node", protocol: "grpc-web", httpStatus: 415, peer: expect.stringMatching(PEER) });
  });

  test("grpc-js logs gRPC-Web on its connection", async () => {
    const session = http2.connect(service.baseUrl);
    const requestId = `type-${randomUUID()}`;
    try {
      const send = (headers: http2.OutgoingHttpHeaders) =>
        new Promise<http2.IncomingHttpHeaders>((resolve, reject) => {
          const stream = session.request({ ":method": "POST", ":path": SEND_SMS, te: "trailers", ...headers });
          stream.end(Buffer.from([0, 0, 0, 0, 0]));
          stream.on("response", resolve);
          stream.on("error", reject);
          stream.resume();
        });
      await send({ "content-type": "application/grpc" });

      let reply: http2.IncomingHttpHeaders = {};
      const added = await counted(sendSmsInvalid, async () => {
        reply = await send({ "content-type": "application/grpc-web+proto", "x-request-id": requestId });
      });

      expect(reply[":status"]).toBe(415);
      expect(reply["x-request-id"]).toBe(requestId);
      expect(added).toBe(1);
      expect(lineOf(requestId)).toMatchObject({ msg: "rpc rejected", server: "grpc-js", protocol: "grpc-web", httpStatus: 415, code: "INVALID_ARGUMENT" });
    } finally {
      session.close();
    }
  });
});

describe("HTTP method other than POST on a grpc-js connection", () => {
  let gateway: ScriptedGateway;
  let integrationId = "";

  beforeAll(async () => {
    gateway = await ScriptedGateway.start();
    gateway.on("/sms", { json: { data: { id: "gw-1", date: "2026-01-02T03:04:05Z" } } });
    const integrations = createClient(IntegrationService, createConnectTransport({ baseUrl: service.baseUrl, httpVersion: "1.1" }));
    const { integration } = await integrations.configureIntegration({
      integration: { baseUrl: gateway.url("/sms"), apiKeyHeader: "X-API-KEY", apiKey: "method-key-1234", defaultSender: "Acme" },
    });
    integrationId = integration?.id ?? "";
  });

  afterAll(async () => {
    await gateway.close();
  });

  // grpc-js itself serves any method, so these sent the SMS where connect-node replies 405.
  test.each(["HEAD", "GET", "PUT", "OPTIONS"])("%s is 405 and sends nothing", async (method) => {
    const requestId = `method-${method}-${randomUUID()}`;
    const message = toBinary(SendSmsRequestSchema, create(SendSmsRequestSchema, { integrationId, to: "+15550001111", content: `via ${method}` }));
    const framed = Buffer.concat([Buffer.from([0, 0, 0, 0, message.length]), message]);
    // The first request names a grpc-js method in gRPC with protobuf, so the connection goes to grpc-js.
    const session = http2.connect(service.baseUrl);
    try {
      let reply: http2.IncomingHttpHeaders = {};
      const added = await counted({ service: "smsgateway.v1.SmsService", method: "SendSms", code: "UNIMPLEMENTED" }, async () => {
        const stream = session.request({ ":method": method, ":path": SEND_SMS, "content-type": "application/grpc", te: "trailers", "x-request-id": requestId }, { endStream: false });
        stream.end(framed);
        stream.resume();
        reply = await new Promise<http2.IncomingHttpHeaders>((resolve, reject) => {
          stream.on("response", resolve);
          stream.on("error", reject);
        });
        await new Promise((resolve) => stream.on("close", resolve));
      });

      expect(reply[":status"]).toBe(405);
      expect(reply["x-request-id"]).toBe(requestId);
      expect(added).toBe(1);
      expect(lineOf(requestId)).toMatchObject({ msg: "rpc rejected", server: "grpc-js", protocol: "grpc", httpStatus: 405, code: "UNIMPLEMENTED" });
      expect(gateway.requestsTo("/sms")).toHaveLength(0);
    } finally {
      session.close();
    }
  });
});

describe("request over MAX_REQUEST_BYTES", () => {
  const tooLarge = { service: "smsgateway.v1.SmsService", method: "SendSms", code: "RESOURCE_EXHAUSTED" };
  const message = `the request message is larger than MAX_REQUEST_BYTES (${MAX_REQUEST_BYTES} bytes); send a smaller request or raise MAX_REQUEST_BYTES`;

  test.each(CONNECT_NODE_CLIENTS)("$name fails through the pipeline", async ({ transport }) => {
    const requestId = `large-${randomUUID()}`;
    const client = await transport(service.baseUrl);
    let error: ConnectError | undefined;

    const added = await counted(tooLarge, async () => {
      error = await failure(client, SmsService.method.sendSms, OVERSIZED, { "x-request-id": requestId });
    });

    expect(error?.code).toBe(Code.ResourceExhausted);
    expect(error?.rawMessage).toBe(message);
    expect(added).toBe(1);
    expect(lineOf(requestId)).toMatchObject({ msg: "rpc failed", server: "connect-node", code: "RESOURCE_EXHAUSTED", error: message });
  });

  test("grpc-js fails through the pipeline", async () => {
    const client = await grpcJsClient(service.baseUrl);
    const requestId = `large-${randomUUID()}`;
    try {
      let error: grpc.ServiceError | null = null;
      const added = await counted(tooLarge, async () => {
        error = await grpcJsCall(client, SEND_SMS, toBinary(SendSmsRequestSchema, create(SendSmsRequestSchema, OVERSIZED)), { "x-request-id": requestId });
      });

      expect(error).toMatchObject({ code: grpc.status.RESOURCE_EXHAUSTED, details: message });
      expect(String((error as grpc.ServiceError | null)?.metadata.get("x-request-id")[0])).toBe(requestId);
      expect(added).toBe(1);
      expect(lineOf(requestId)).toMatchObject({ msg: "rpc failed", server: "grpc-js", code: "RESOURCE_EXHAUSTED", error: message });
    } finally {
      client.close();
    }
  });

  test.each([
    {
      name: "an oversized second message",
      headers: {},
      // The first message arrives whole. The second declares more than MAX_REQUEST_BYTES, and the body ends with it.
      rest: Buffer.from([0, 0, 0, 0x10, 0]),
      status: grpc.status.RESOURCE_EXHAUSTED,
      line: { msg: "rpc failed", code: "RESOURCE_EXHAUSTED" },
    },
    // grpc-js sends DEADLINE_EXCEEDED without the pipeline, so the call has no line.
    { name: "the deadline", headers: { "grpc-timeout": "50m" }, rest: Buffer.alloc(0), status: grpc.status.DEADLINE_EXCEEDED, line: undefined },
  ])("grpc-js runs no handler after $name", async ({ headers, rest, status, line }) => {
    const session = http2.connect(service.baseUrl);
    const requestId = `ended-${randomUUID()}`;
    const notFound = { service: "smsgateway.v1.SmsService", method: "SendSms", code: "NOT_FOUND" };
    const message = toBinary(SendSmsRequestSchema, create(SendSmsRequestSchema, { integrationId: "int_missing", to: "+15550001111", content: "hi" }));
    const frame = Buffer.concat([Buffer.from([0, 0, 0, 0, message.length]), message]);
    const call = (callHeaders: http2.OutgoingHttpHeaders, send: (stream: http2.ClientHttp2Stream) => Promise<void>) =>
      new Promise<http2.IncomingHttpHeaders>((resolve, reject) => {
        const stream = session.request({ ":method": "POST", ":path": SEND_SMS, "content-type": "application/grpc", te: "trailers", ...callHeaders });
        const reply: http2.IncomingHttpHeaders = {};
        stream.on("response", (received) => Object.assign(reply, received));
        stream.on("trailers", (received) => Object.assign(reply, received));
        stream.on("close", () => resolve(reply));
        stream.on("error", reject);
        stream.resume();
        send(stream).catch(reject);
      });
    try {
      await call({}, async (stream) => void stream.end(frame));

      let reply: http2.IncomingHttpHeaders = {};
      const handled = await counted(notFound, async () => {
        reply = await call({ ...headers, "x-request-id": requestId }, async (stream) => {
          stream.write(frame);
          await new Promise((resolve) => setTimeout(resolve, 150));
          stream.end(rest);
        });
        await new Promise((resolve) => setTimeout(resolve, 200));
      });

      expect(reply["grpc-status"]).toBe(String(status));
      expect(handled).toBe(0);
      if (line === undefined) {
        expect(lineOf(requestId)).toBeUndefined();
      } else {
        expect(lineOf(requestId)).toMatchObject(line);
      }
    } finally {
      session.close();
    }
  });
});

describe("undecodable request message", () => {
  const sendInvalid = { service: "smsgateway.v1.SmsService", method: "SendSms", code: "INVALID_ARGUMENT" };

  test.each(CONNECT_NODE_CLIENTS)("$name is INVALID_ARGUMENT", async ({ transport }) => {
    const requestId = `undecodable-${randomUUID()}`;
    const client = await transport(service.baseUrl);
    let error: ConnectError | undefined;

    const added = await counted(sendInvalid, async () => {
      error = await failure(client, rawSendSms, UNDECODABLE, { "x-request-id": requestId });
    });

    expect(error?.code).toBe(Code.InvalidArgument);
    expect(error?.rawMessage).toMatch(/^the request message could not be decoded: /);
    expect(added).toBe(1);
    expect(lineOf(requestId)).toMatchObject({ msg: "rpc failed", server: "connect-node", code: "INVALID_ARGUMENT" });
  });

  test("Connect GET in protobuf is INVALID_ARGUMENT", async () => {
    const transport = createConnectTransport({ baseUrl: service.baseUrl, httpVersion: "1.1", useHttpGet: true });
    const requestId = `undecodable-${randomUUID()}`;
    let error: ConnectError | undefined;

    const added = await counted({ service: "smsgateway.v1.IntegrationService", method: "GetIntegration", code: "INVALID_ARGUMENT" }, async () => {
      error = await failure(transport, rawGetIntegration, UNDECODABLE, { "x-request-id": requestId });
    });

    expect(error?.code).toBe(Code.InvalidArgument);
    expect(error?.rawMessage).toMatch(/^the request message could not be decoded: /);
    expect(added).toBe(1);
    expect(lineOf(requestId)).toMatchObject({ msg: "rpc failed", server: "connect-node", procedure: "smsgateway.v1.IntegrationService/GetIntegration" });
  });
});

describe("upload canceled by the caller", () => {
  const canceled = { service: "smsgateway.v1.SmsService", method: "SendSms", code: "CANCELLED" };
  const internal = { service: "smsgateway.v1.SmsService", method: "SendSms", code: "INTERNAL" };
  /** The start of a gRPC-Web message that declares 1000 bytes, of which the caller sends three. */
  const PARTIAL_MESSAGE = Buffer.from([0, 0, 0, 0x03, 0xe8, 1, 2, 3]);

  async function lineWhenLogged(requestId: string): Promise<Record<string, unknown>> {
    const found = await eventually(async () => lineOf(requestId), (line) => line !== undefined, `log line of ${requestId}`, { timeoutMs: 2_000 });
    return found.value!;
  }

  test("gRPC-Web over HTTP/1.1 is CANCELLED", async () => {
    const requestId = `upload-${randomUUID()}`;
    const internalBefore = await rpcCount(service, internal);

    const added = await counted(canceled, async () => {
      const socket = net.connect(service.app.server.port, "127.0.0.1");
      await new Promise((resolve) => socket.once("connect", resolve));
      socket.write(
        `POST ${SEND_SMS} HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/grpc-web+proto\r\n` +
          `content-length: 1005\r\nx-request-id: ${requestId}\r\n\r\n`,
      );
      socket.write(PARTIAL_MESSAGE);
      await new Promise((resolve) => setTimeout(resolve, 100));
      socket.destroy();
      await lineWhenLogged(requestId);
    });

    expect(added).toBe(1);
    expect(await rpcCount(service, internal)).toBe(internalBefore);
    expect(lineOf(requestId)).toMatchObject({ msg: "rpc failed", level: 30, server: "connect-node", code: "CANCELLED" });
  });

  test("gRPC-Web over HTTP/2 is CANCELLED", async () => {
    const session = http2.connect(service.baseUrl);
    const requestId = `upload-${randomUUID()}`;
    try {
      const stream = session.request({ ":method": "POST", ":path": SEND_SMS, "content-type": "application/grpc-web+proto", "x-request-id": requestId });
      stream.on("error", () => {});
      stream.write(PARTIAL_MESSAGE);
      await new Promise((resolve) => setTimeout(resolve, 100));
      stream.destroy();

      expect(await lineWhenLogged(requestId)).toMatchObject({ msg: "rpc failed", level: 30, server: "connect-node", code: "CANCELLED" });
    } finally {
      session.close();
    }
  });
});

describe("unreadable request without credentials", () => {
  test.each([
    { name: "oversized over gRPC-Web", method: SmsService.method.sendSms as DescMethodUnary, input: OVERSIZED },
    { name: "undecodable over gRPC-Web", method: rawSendSms as DescMethodUnary, input: UNDECODABLE },
  ])("$name is UNAUTHENTICATED", async ({ method, input }) => {
    const requestId = `anonymous-${randomUUID()}`;

    const error = await failure(createGrpcWebTransport({ baseUrl: secured.baseUrl, httpVersion: "1.1" }), method, input, { "x-request-id": requestId });

    expect(error.code).toBe(Code.Unauthenticated);
    expect(lineOf(requestId, secured)).toMatchObject({ msg: "rpc failed", code: "UNAUTHENTICATED", server: "connect-node" });
  });

  test("oversized over grpc-js is UNAUTHENTICATED", async () => {
    const client = await grpcJsClient(secured.baseUrl);
    const requestId = `anonymous-${randomUUID()}`;
    try {
      const error = await grpcJsCall(client, SEND_SMS, toBinary(SendSmsRequestSchema, create(SendSmsRequestSchema, OVERSIZED)), { "x-request-id": requestId });

      expect(error?.code).toBe(grpc.status.UNAUTHENTICATED);
      expect(lineOf(requestId, secured)).toMatchObject({ msg: "rpc failed", code: "UNAUTHENTICATED", server: "grpc-js" });
    } finally {
      client.close();
    }
  });
});

test.each([
  { name: "HTTP/1.0 request without Host", version: "HTTP/1.0", host: "", reason: /^the request has no Host header; / },
  { name: "Host with a space", version: "HTTP/1.1", host: "host: a b\r\nconnection: close\r\n", reason: /^the Host header "a b" is not a valid host; / },
])("$name is rejected", async ({ version, host, reason }) => {
  const requestId = `no-host-${randomUUID()}`;
  const reply = await new Promise<string>((resolve, reject) => {
    const socket = net.connect(secured.app.server.port, "127.0.0.1", () => {
      socket.end(
        `POST /grpc.health.v1.Health/Check ${version}\r\n${host}content-type: application/grpc-web+proto\r\n` +
          `x-request-id: ${requestId}\r\ncontent-length: 5\r\n\r\n\0\0\0\0\0`,
      );
    });
    let text = "";
    socket.on("data", (chunk: Buffer) => (text += chunk.toString("latin1")));
    socket.on("close", () => resolve(text));
    socket.on("error", reject);
  });

  expect(reply).toMatch(/^HTTP\/1\.1 400 /);
  expect(lineOf(requestId, secured)).toMatchObject({ msg: "rpc rejected", procedure: "grpc.health.v1.Health/Check", server: "connect-node", httpStatus: 400 });
  expect(lineOf(requestId, secured)?.error).toMatch(reason);
  expect((await fetch(`${secured.baseUrl}/healthz`)).status).toBe(200);
});

