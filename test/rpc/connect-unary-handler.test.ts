import http2 from "node:http2";
import { Readable, Writable } from "node:stream";
import { gunzipSync, gzipSync } from "node:zlib";
import { create, createRegistry, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { compressionGzip, connectNodeAdapter, createConnectTransport } from "@connectrpc/connect-node";
import pino from "pino";
import { request as undiciRequest } from "undici";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { BadRequestSchema, file_smsgateway_v1_errors } from "../../gen/smsgateway/v1/errors_pb.js";
import { SmsService, SendSmsRequestSchema, SendSmsResponseSchema, type SendSmsRequest } from "../../gen/smsgateway/v1/sms_service_pb.js";
import type { CallContext, UnaryHandler } from "../../src/rpc/call-context.js";
import { CallPipeline } from "../../src/rpc/call-pipeline.js";
import { connectRoutes, type ServiceBinding } from "../../src/rpc/connect-routes.js";
import { connectUnaryHandler } from "../../src/rpc/connect-unary-handler.js";
import { startServer, type RunningServer } from "../../src/server/one-port-server.js";
import { rejection } from "../helpers/clients.js";

// The same handlers behind two servers: the service's own Connect unary
// handler (with connect-node behind it for everything else, as in the app)
// and connect-node alone. Each request goes to both, and the responses must
// match, except where a test names a difference.

const MAX_REQUEST_BYTES = 4_096;
const jsonOptions = { registry: createRegistry(file_smsgateway_v1_errors) };
const SEND_PATH = "/smsgateway.v1.SmsService/SendSms";

const logLines: Record<string, unknown>[] = [];
const logger = pino(
  { level: "info" },
  new Writable({
    write(chunk: Buffer, _encoding, done) {
      logLines.push(JSON.parse(chunk.toString("utf8")) as Record<string, unknown>);
      done();
    },
  }),
);

/** The `content` of each waiting call that has started to wait. */
const waiting = new Set<string>();
/** Abort reasons of the waiting calls, by the `content` of their request. */
const abortReasons = new Map<string, unknown>();

/** Behaves by the request's `content`, so each test picks what the handler does. */
const sendSms: UnaryHandler<SendSmsRequest, unknown> = async (request, context: CallContext) => {
  switch (request.content) {
    case "fail":
      throw new ConnectError("the integration is paused", Code.FailedPrecondition, { "retry-after": "7" }, [
        { desc: BadRequestSchema, value: { fieldViolations: [{ field: "integration_id", description: "paused" }] } },
      ]);
    case "big":
      return create(SendSmsResponseSchema, { id: "m".repeat(3_000), warnings: ["w".repeat(500)] });
    case "pause":
      await new Promise((resolve) => setTimeout(resolve, 50));
      return create(SendSmsResponseSchema, { id: `aborted: ${context.signal.aborted}` });
    case "echo":
      return create(SendSmsResponseSchema, {
        id: context.requestHeader("x-probe") ?? "none",
        rawDate: String(context.timeoutMs() !== undefined),
      });
    default:
      if (request.content.startsWith("wait:")) {
        waiting.add(request.content);
        const reason = await new Promise((resolve) => context.signal.addEventListener("abort", () => resolve(context.signal.reason)));
        abortReasons.set(request.content, reason);
        throw reason;
      }
      return create(SendSmsResponseSchema, { id: `msg_${request.to}`, gatewayStatus: 200, attempts: 1, warnings: ["note"] });
  }
};

function bindings(): ServiceBinding[] {
  const handlers: Record<string, UnaryHandler<never, unknown>> = {};
  for (const method of SmsService.methods) {
    handlers[method.localName] = async () => {
      throw new ConnectError(`${method.name} is not part of this test`, Code.Unimplemented);
    };
  }
  handlers.sendSms = sendSms as UnaryHandler<never, unknown>;
  return [{ desc: SmsService, handlers }];
}

const shutdown = new AbortController();
let own: RunningServer;
let plain: RunningServer;

beforeAll(async () => {
  const pipeline = new CallPipeline(logger);
  const connectNode = () =>
    connectNodeAdapter({
      routes: connectRoutes(bindings(), pipeline),
      readMaxBytes: MAX_REQUEST_BYTES,
      shutdownSignal: shutdown.signal,
      jsonOptions,
    });
  const handler = connectUnaryHandler(bindings(), pipeline, {
    maxRequestBytes: MAX_REQUEST_BYTES,
    shutdownSignal: shutdown.signal,
    jsonOptions,
    fallback: connectNode(),
    logger,
  });
  own = await startServer(handler, { host: "127.0.0.1", port: 0 });
  plain = await startServer(connectNode(), { host: "127.0.0.1", port: 0 });
});

afterAll(async () => {
  await own.close(1_000);
  await plain.close(1_000);
});

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

type Headers = Record<string, string | string[] | undefined>;

async function post(server: RunningServer, headers: Headers, body: Buffer | Readable, path = SEND_PATH): Promise<Reply> {
  const defined = Object.fromEntries(Object.entries(headers).filter((entry): entry is [string, string | string[]] => entry[1] !== undefined));
  const response = await undiciRequest(`http://127.0.0.1:${server.port}${path}`, { method: "POST", headers: defined, body });
  return { status: response.statusCode, headers: response.headers, body: Buffer.from(await response.body.arrayBuffer()) };
}

/** Sends the same request to both servers. */
async function both(headers: Headers, body: () => Buffer | Readable, path?: string): Promise<[Reply, Reply]> {
  return [await post(own, headers, body(), path), await post(plain, headers, body(), path)];
}

/** The parts of a reply that both servers must agree on. */
function comparable(reply: Reply): unknown {
  const encoding = reply.headers["content-encoding"];
  const body = encoding === "gzip" ? gunzipSync(reply.body) : reply.body;
  const type = String(reply.headers["content-type"]);
  return {
    status: reply.status,
    contentType: type,
    contentEncoding: encoding,
    retryAfter: reply.headers["retry-after"],
    acceptEncoding: reply.headers["accept-encoding"],
    body: type.startsWith("application/json") ? JSON.parse(body.toString("utf8")) : body.toString("base64"),
  };
}

function sendBytes(content: string, to = "+15550001111"): Buffer {
  return Buffer.from(toBinary(SendSmsRequestSchema, create(SendSmsRequestSchema, { integrationId: "gw", to, content })));
}

function sendJson(content: string, extra: Record<string, unknown> = {}): Buffer {
  return Buffer.from(JSON.stringify({ integrationId: "gw", to: "+15550001111", content, ...extra }));
}

describe("responds as connect-node does", () => {
  test.each([
    { name: "protobuf", headers: { "content-type": "application/proto" }, body: () => sendBytes("hello") },
    { name: "JSON", headers: { "content-type": "application/json" }, body: () => sendJson("hello") },
    { name: "JSON with a charset", headers: { "content-type": "application/json; charset=utf-8" }, body: () => sendJson("hello") },
    { name: "JSON in upper case", headers: { "content-type": "APPLICATION/JSON" }, body: () => sendJson("hello") },
    { name: "JSON with an unknown field", headers: { "content-type": "application/json" }, body: () => sendJson("hello", { color: "red" }) },
    { name: "an error with details and metadata", headers: { "content-type": "application/proto" }, body: () => sendBytes("fail") },
    { name: "an error over JSON", headers: { "content-type": "application/json" }, body: () => sendJson("fail") },
    { name: "an unknown request encoding", headers: { "content-type": "application/proto", "content-encoding": "zstd" }, body: () => sendBytes("hello") },
    {
      name: "a gzip request",
      headers: { "content-type": "application/proto", "content-encoding": "gzip" },
      body: () => gzipSync(sendBytes("hello")),
    },
    { name: "a large reply to a caller that accepts gzip", headers: { "content-type": "application/proto", "accept-encoding": "br;q=0, gzip" }, body: () => sendBytes("big") },
    { name: "a large reply to a caller that accepts gzip first", headers: { "content-type": "application/json", "accept-encoding": "gzip, br" }, body: () => sendJson("big") },
    { name: "a small reply to a caller that accepts gzip", headers: { "content-type": "application/proto", "accept-encoding": "gzip" }, body: () => sendBytes("hello") },
    { name: "a header read by the handler", headers: { "content-type": "application/proto", "x-probe": "probe-1" }, body: () => sendBytes("echo") },
    { name: "a repeated header", headers: { "content-type": "application/proto", "x-probe": ["a", "b"] }, body: () => sendBytes("echo") },
    { name: "a timeout the handler sees", headers: { "content-type": "application/proto", "connect-timeout-ms": "60000" }, body: () => sendBytes("echo") },
  ])("$name", async ({ headers, body }) => {
    const [ours, theirs] = await both(headers, body);

    expect(comparable(ours)).toEqual(comparable(theirs));
  });

  test("the request id header the pipeline sets", async () => {
    const [ours, theirs] = await both({ "content-type": "application/proto", "x-request-id": "req-42" }, () => sendBytes("hello"));

    expect(ours.headers["x-request-id"]).toBe("req-42");
    expect(theirs.headers["x-request-id"]).toBe("req-42");
  });
});

describe("clients over both HTTP versions", () => {
  test.each([
    { httpVersion: "1.1" as const, useBinaryFormat: true },
    { httpVersion: "2" as const, useBinaryFormat: true },
    { httpVersion: "2" as const, useBinaryFormat: false },
  ])("HTTP/$httpVersion, binary $useBinaryFormat, gzip both ways", async (options) => {
    const client = (server: RunningServer) =>
      createClient(
        SmsService,
        createConnectTransport({
          baseUrl: `http://127.0.0.1:${server.port}`,
          ...options,
          jsonOptions,
          sendCompression: compressionGzip,
          compressMinBytes: 1,
        }),
      );
    const request = { integrationId: "gw", to: "+15550002222", content: "hello" };

    const [ours, theirs] = [await client(own).sendSms(request), await client(plain).sendSms(request)];
    const [ourError, theirError] = [
      await rejection(client(own).sendSms({ ...request, content: "fail" })),
      await rejection(client(plain).sendSms({ ...request, content: "fail" })),
    ];

    expect(ours).toEqual(theirs);
    expect(ours.id).toBe("msg_+15550002222");
    expect(ourError.code).toBe(Code.FailedPrecondition);
    expect(ourError.rawMessage).toBe(theirError.rawMessage);
    expect(ourError.metadata.get("retry-after")).toBe("7");
    expect(ourError.findDetails(BadRequestSchema)).toEqual(theirError.findDetails(BadRequestSchema));
    expect(logLines.some((line) => line.server === "connect-unary" && line.code === "FAILED_PRECONDITION")).toBe(true);
  });
});

describe("where it differs from connect-node", () => {
  test("a malformed timeout says what it takes", async () => {
    const [ours, theirs] = await both({ "content-type": "application/proto", "connect-timeout-ms": "500ms" }, () => sendBytes("hello"));

    expect(ours.status).toBe(theirs.status);
    const ourError = JSON.parse(ours.body.toString("utf8")) as { code: string; message: string };
    const theirError = JSON.parse(theirs.body.toString("utf8")) as { code: string; message: string };
    expect(ourError.code).toBe(theirError.code);
    expect(ourError.message).toBe(`${theirError.message}; Connect-Timeout-Ms takes whole milliseconds of up to 10 digits, such as 5000`);
  });

  test("undecodable protobuf is INVALID_ARGUMENT", async () => {
    // Field 3 announces 100 bytes of string that never come.
    const body = () => Buffer.from([0x1a, 100, 0x41]);

    const [ours, theirs] = await both({ "content-type": "application/proto", "x-request-id": "undecodable-1" }, body);

    expect(ours.status).toBe(400);
    expect(JSON.parse(ours.body.toString("utf8"))).toMatchObject({ code: "invalid_argument", message: expect.stringMatching(/^the request message could not be decoded: /) });
    // connect-node blames the server for the client's bytes.
    expect(theirs.status).toBe(500);
    expect(logLines.find((line) => line.requestId === "undecodable-1")).toMatchObject({ msg: "rpc failed", code: "INVALID_ARGUMENT", server: "connect-unary" });
  });

  test("an unknown encoding is logged as the caller's error", async () => {
    const headers = { "content-type": "application/proto", "content-encoding": "zstd", "x-request-id": "zstd-1" };

    const [ours] = await both(headers, () => sendBytes("hello"));

    expect(JSON.parse(ours.body.toString("utf8"))).toMatchObject({ code: "unimplemented" });
    expect(logLines.find((line) => line.requestId === "zstd-1")).toMatchObject({ msg: "rpc failed", code: "UNIMPLEMENTED", level: 30 });
    expect(logLines.find((line) => line.requestId === "zstd-1")).not.toHaveProperty("err");
  });

  test.each([
    { name: "declared", headers: {}, body: () => sendBytes("x".repeat(MAX_REQUEST_BYTES)) },
    {
      name: "without a declared length",
      headers: {},
      body: () => Readable.from([sendBytes("x".repeat(MAX_REQUEST_BYTES / 2)), sendBytes("y".repeat(MAX_REQUEST_BYTES / 2))]),
    },
    { name: "once inflated", headers: { "content-encoding": "gzip" }, body: () => gzipSync(sendBytes("x".repeat(MAX_REQUEST_BYTES * 4))) },
  ])("a body over the limit ($name) names MAX_REQUEST_BYTES", async ({ headers, body }) => {
    const [ours, theirs] = await both({ "content-type": "application/proto", ...headers }, body);
    const ourError = JSON.parse(ours.body.toString("utf8")) as { code: string; message: string };

    expect(ours.status).toBe(429);
    expect(theirs.status).toBe(429);
    expect(ourError.code).toBe("resource_exhausted");
    expect(ourError.message).toMatch(/^the request message( of \d+ bytes)? is larger than MAX_REQUEST_BYTES \(4096 bytes\); send a smaller request or raise MAX_REQUEST_BYTES$/);
  });

  test.each([
    { path: "/smsgateway.v1.SmsService/SendSMS", message: 'smsgateway.v1.SmsService has no method "SendSMS"; did you mean SendSms?' },
    {
      path: "/smsgateway.v1.SmsService/NoSuchMethod",
      message: `smsgateway.v1.SmsService has no method "NoSuchMethod"; its methods are ${SmsService.methods.map((method) => method.name).join(", ")}`,
    },
  ])("an unknown method $path says which exist", async ({ path, message }) => {
    const [ours, theirs] = await both({ "content-type": "application/json" }, () => sendJson("hello"), path);

    expect(ours.status).toBe(404);
    expect(theirs.status).toBe(404);
    expect(JSON.parse(ours.body.toString("utf8"))).toEqual({ code: "unimplemented", message });
  });

  test.each([
    { name: "form encoding", headers: { "content-type": "application/x-www-form-urlencoded" }, shown: '"application/x-www-form-urlencoded"' },
    { name: "no content type", headers: {}, shown: "(none)" },
    { name: "a streaming content type", headers: { "content-type": "application/connect+proto" }, shown: '"application/connect+proto"' },
  ])("$name says which content types work", async ({ headers, shown }) => {
    const [ours, theirs] = await both(headers, () => sendJson("hello"));

    expect(ours.status).toBe(415);
    expect(theirs.status).toBe(415);
    expect(JSON.parse(ours.body.toString("utf8"))).toEqual({
      code: "invalid_argument",
      message: `unsupported content type ${shown}; send Connect calls as application/json or application/proto, or use a gRPC or gRPC-Web client`,
    });
  });

  test("malformed JSON is INVALID_ARGUMENT", async () => {
    const ours = await post(own, { "content-type": "application/json" }, Buffer.from("{not json"));

    expect(ours.status).toBe(400);
    expect(JSON.parse(ours.body.toString("utf8"))).toMatchObject({ code: "invalid_argument", message: expect.stringMatching(/^the request message could not be decoded: /) });
  });
});

describe("bodies it does not read", () => {
  /** Sends the headers, then the body after `delayMs`, over HTTP/2; resolves with the reply and when it came. */
  async function delayedBody(path: string, headers: Headers, body: Buffer, delayMs: number) {
    const session = http2.connect(`http://127.0.0.1:${own.port}`);
    try {
      const started = performance.now();
      const stream = session.request({ ":method": "POST", ":path": path, ...headers } as http2.OutgoingHttpHeaders);
      stream.on("error", () => undefined);
      setTimeout(() => stream.end(body), delayMs);
      const status = await new Promise<number>((resolve) => stream.once("response", (reply) => resolve(Number(reply[":status"]))));
      const repliedAfterMs = performance.now() - started;
      // A stream with body bytes still unsent is closed by the server's reset
      // but emits "close" only once destroyed, so the test polls the flag.
      stream.resume();
      const closed = await new Promise<boolean>((resolve) => {
        const poll = setInterval(() => {
          if (stream.closed) {
            clearInterval(poll);
            resolve(true);
          }
        }, 10);
        setTimeout(() => {
          clearInterval(poll);
          resolve(stream.closed);
        }, 2_000);
      });
      return { status, repliedAfterMs, closed };
    } finally {
      session.destroy();
    }
  }

  test.each([
    { name: "a misspelled method", path: "/smsgateway.v1.SmsService/SendSMS", headers: { "content-type": "application/json" }, status: 404 },
    { name: "a missing content type", path: SEND_PATH, headers: {}, status: 415 },
    { name: "a malformed timeout", path: SEND_PATH, headers: { "content-type": "application/json", "connect-timeout-ms": "soon" }, status: 400 },
  ])("a reply to $name waits for the body", async ({ path, headers, status }) => {
    const reply = await delayedBody(path, headers, sendJson("hello"), 150);

    expect(reply.status).toBe(status);
    expect(reply.repliedAfterMs).toBeGreaterThanOrEqual(140);
    expect(reply.closed).toBe(true);
  });

  test("oversized HTTP/2 body without length ends stream", async () => {
    const reply = await delayedBody(SEND_PATH, { "content-type": "application/proto" }, sendBytes("x".repeat(200_000)), 0);

    expect(reply.status).toBe(429);
    expect(reply.closed).toBe(true);
  });
});

describe("the call's signal", () => {
  test("DEADLINE_EXCEEDED when Connect-Timeout-Ms passes", async () => {
    const ours = await post(own, { "content-type": "application/proto", "connect-timeout-ms": "50" }, sendBytes("wait:deadline"));

    expect(ours.status).toBe(504);
    expect(abortReasons.get("wait:deadline")).toMatchObject({ code: Code.DeadlineExceeded });
  });

  test("stays unaborted under a ten-digit timeout", async () => {
    const reply = await post(own, { "content-type": "application/proto", "connect-timeout-ms": "9999999999" }, sendBytes("pause"));

    expect(reply.status).toBe(200);
    expect(fromBinary(SendSmsResponseSchema, reply.body).id).toBe("aborted: false");
  });

  test("CANCELED when the caller resets", async () => {
    const session = http2.connect(`http://127.0.0.1:${own.port}`);
    try {
      const stream = session.request({ ":method": "POST", ":path": SEND_PATH, "content-type": "application/proto" });
      stream.on("error", () => undefined);
      stream.end(sendBytes("wait:reset"));
      await expect.poll(() => waiting.has("wait:reset")).toBe(true);
      stream.close(http2.constants.NGHTTP2_CANCEL);

      await expect.poll(() => abortReasons.get("wait:reset")).toMatchObject({ code: Code.Canceled });
    } finally {
      session.destroy();
    }
  });

  test("reset mid-body is CANCELED", async () => {
    const session = http2.connect(`http://127.0.0.1:${own.port}`);
    try {
      const stream = session.request({ ":method": "POST", ":path": SEND_PATH, "content-type": "application/proto", "x-request-id": "reset-mid-body" });
      stream.on("error", () => undefined);
      // These bytes decode as a whole message. destroy() sends RST_STREAM
      // without ending the body first. Node's close(code) would end the body
      // with END_STREAM before it resets the stream.
      stream.write(sendBytes("wait:never"));
      await new Promise((resolve) => setTimeout(resolve, 50));
      stream.destroy();

      await expect.poll(() => logLines.find((line) => line.requestId === "reset-mid-body")).toMatchObject({ code: "CANCELLED" });
      expect(waiting.has("wait:never")).toBe(false);
    } finally {
      session.destroy();
    }
  });

  test("CANCELED when an HTTP/1.1 caller disconnects", async () => {
    const controller = new AbortController();
    const call = undiciRequest(`http://127.0.0.1:${own.port}${SEND_PATH}`, {
      method: "POST",
      headers: { "content-type": "application/proto" },
      body: sendBytes("wait:close"),
      signal: controller.signal,
    }).catch(() => undefined);
    await expect.poll(() => waiting.has("wait:close")).toBe(true);
    controller.abort();
    await call;

    await expect.poll(() => abortReasons.get("wait:close")).toMatchObject({ code: Code.Canceled });
  });

  test("shutdown reason reaches the handler", async () => {
    const call = post(own, { "content-type": "application/proto" }, sendBytes("wait:shutdown"));
    await expect.poll(() => waiting.has("wait:shutdown")).toBe(true);
    shutdown.abort(new ConnectError("the service is stopping", Code.Unavailable));

    const reply = await call;

    expect(reply.status).toBe(503);
    expect(abortReasons.get("wait:shutdown")).toMatchObject({ code: Code.Unavailable });
  });
});

test("replies decode alike from both servers", async () => {
  const [ours, theirs] = await both({ "content-type": "application/proto" }, () => sendBytes("hello", "+15550003333"));

  expect(fromBinary(SendSmsResponseSchema, ours.body)).toEqual(fromBinary(SendSmsResponseSchema, theirs.body));
  expect(ours.headers["content-length"]).toBe(String(ours.body.byteLength));
});
