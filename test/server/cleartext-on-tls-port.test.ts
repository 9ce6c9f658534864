import http from "node:http";
import http2 from "node:http2";
import https from "node:https";
import net from "node:net";
import tls from "node:tls";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Writable } from "node:stream";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import { IntegrationService } from "../../gen/smsgateway/v1/integration_service_pb.js";
import { createLogger } from "../../src/logger.js";
import { CleartextConnectionLog, EXPECTS_TLS_MESSAGE } from "../../src/server/cleartext-on-tls-port.js";
import { HTTP2_PREFACE } from "../../src/server/http2-first-request.js";
import { startServer, type ListenOptions, type RunningServer } from "../../src/server/one-port-server.js";
import { holdOpen } from "../helpers/raw-connection.js";
import { hasOpenssl, writeTestCertificate } from "../helpers/test-certificate.js";

const certDir = mkdtempSync(path.join(tmpdir(), "smsgateway-cleartext-"));
let credentials: { cert: Buffer; key: Buffer };
const servers: RunningServer[] = [];

/** Returns a logger whose JSON lines land in `lines`. */
function capturingLogger(lines: Record<string, unknown>[]) {
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString("utf8").split("\n").filter((text) => text !== "")) {
        lines.push(JSON.parse(line) as Record<string, unknown>);
      }
      callback();
    },
  });
  return createLogger("debug", sink);
}

/** Waits until a line whose message starts with `prefix` is in `lines`, for at most 5 s. */
async function waitForLine(lines: Record<string, unknown>[], prefix: string): Promise<void> {
  const deadline = Date.now() + 5_000;
  while (!lines.some((line) => String(line.msg).startsWith(prefix))) {
    if (Date.now() > deadline) {
      throw new Error(`no log line starting with "${prefix}" within 5 s; lines: ${JSON.stringify(lines)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Starts a TLS server whose handler responds "ok" to every request; its log lines land in `logLines`. */
async function startTls(options: Partial<ListenOptions> = {}, logLines: Record<string, unknown>[] = []): Promise<RunningServer> {
  const server = await startServer((_request, response) => response.end("ok"), {
    host: "127.0.0.1",
    port: 0,
    tls: credentials,
    logger: capturingLogger(logLines),
    ...options,
  });
  servers.push(server);
  return server;
}

describe.skipIf(!hasOpenssl())("cleartext on the TLS port", () => {
  beforeAll(() => {
    const { certFile, keyFile } = writeTestCertificate(certDir);
    credentials = { cert: readFileSync(certFile), key: readFileSync(keyFile) };
  });

  afterEach(async () => {
    for (const server of servers.splice(0)) {
      await server.close(0);
    }
  });

  afterAll(() => {
    rmSync(certDir, { recursive: true, force: true });
  });

  test("HTTP/1.1 request gets 400 and close", async () => {
    const server = await startTls();

    const { closed, received } = await holdOpen(server.port, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 5_000);

    expect(received).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/);
    expect(received).toMatch(/\r\ncontent-type: text\/plain; charset=utf-8\r\n/i);
    expect(received).toMatch(/\r\nconnection: close\r\n/i);
    expect(received.split("\r\n\r\n")[1]).toBe(`${EXPECTS_TLS_MESSAGE}\n`);
    expect(closed, "the connection stayed open after the 400").toBe(true);
  });

  test("failed handshake is logged", async () => {
    const logLines: Record<string, unknown>[] = [];
    const server = await startTls({}, logLines);

    // The client does not trust the self-signed certificate, so it closes the connection during the handshake.
    const clientError = await new Promise<Error>((resolve) => {
      const socket = tls.connect({ host: "127.0.0.1", port: server.port, servername: "localhost" });
      socket.once("secureConnect", () => resolve(new Error("the handshake succeeded")));
      socket.once("error", resolve);
    });
    await waitForLine(logLines, "TLS handshake failed");

    expect(clientError.message).toMatch(/self[- ]signed/);
    const line = logLines.find((entry) => String(entry.msg).startsWith("TLS handshake failed"));
    expect(line).toMatchObject({ level: 40, remoteAddress: "127.0.0.1", unloggedSinceLastLine: 0 });
    expect(line?.code).toBe("ECONNRESET");
    expect(line?.error).toBe("socket hang up");
  });

  test("handshake without a shared TLS version is logged", async () => {
    const logLines: Record<string, unknown>[] = [];
    const server = await startTls({}, logLines);

    await new Promise<void>((resolve) => {
      const socket = tls.connect({ host: "127.0.0.1", port: server.port, minVersion: "TLSv1", maxVersion: "TLSv1.1", rejectUnauthorized: false });
      socket.once("secureConnect", () => resolve());
      socket.once("error", () => resolve());
    });
    await waitForLine(logLines, "TLS handshake failed");

    const line = logLines.find((entry) => String(entry.msg).startsWith("TLS handshake failed"));
    expect(line?.code).toMatch(/^ERR_SSL_/);
    expect(String(line?.error)).toContain("unsupported protocol");
  });

  test("message names https and the client options", () => {
    expect(EXPECTS_TLS_MESSAGE).toContain("expects TLS");
    expect(EXPECTS_TLS_MESSAGE).toContain("https://");
    expect(EXPECTS_TLS_MESSAGE).toContain("--http2-prior-knowledge");
    expect(EXPECTS_TLS_MESSAGE).toContain("TLS credentials");
    // gRPC sends printable ASCII other than "%" as it is, in the grpc-message header.
    expect(EXPECTS_TLS_MESSAGE).toMatch(/^[\x20-\x24\x26-\x7e]+$/);
  });

  test("HTTP/1.0 HEAD request gets 400 without body", async () => {
    const server = await startTls();

    const { closed, received } = await holdOpen(server.port, "HEAD / HTTP/1.0\r\n\r\n", 5_000);

    expect(received).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/);
    expect(received.split("\r\n\r\n")[1]).toBe("");
    expect(closed).toBe(true);
  });

  test("Node http client reads the 400", async () => {
    const server = await startTls();

    const { status, body } = await new Promise<{ status: number | undefined; body: string }>((resolve, reject) => {
      http
        .get({ host: "127.0.0.1", port: server.port, path: "/healthz" }, (response) => {
          let text = "";
          response.setEncoding("utf8");
          response.on("data", (chunk: string) => (text += chunk));
          response.on("end", () => resolve({ status: response.statusCode, body: text }));
        })
        .on("error", reject);
    });

    expect(status).toBe(400);
    expect(body).toBe(`${EXPECTS_TLS_MESSAGE}\n`);
  });

  test("HTTP/2 prior knowledge gets 400 and GOAWAY", async () => {
    const server = await startTls();
    const session = http2.connect(`http://127.0.0.1:${server.port}`);
    session.on("error", () => {});
    const goAway = new Promise<number>((resolve) => session.once("goaway", (errorCode: number) => resolve(errorCode)));
    const closed = new Promise<void>((resolve) => session.once("close", () => resolve()));

    const stream = session.request({ ":path": "/healthz" });
    const status = new Promise<unknown>((resolve) => stream.once("response", (headers) => resolve(headers[":status"])));
    let body = "";
    stream.setEncoding("utf8");
    stream.on("data", (chunk: string) => (body += chunk));
    await new Promise((resolve) => stream.once("end", resolve));

    expect(await status).toBe(400);
    expect(body).toBe(`${EXPECTS_TLS_MESSAGE}\n`);
    expect(await goAway).toBe(http2.constants.NGHTTP2_NO_ERROR);
    await closed;
  });

  test.each([
    { httpVersion: "1.1", useHttpGet: false },
    { httpVersion: "2", useHttpGet: false },
    { httpVersion: "1.1", useHttpGet: true },
  ] as const)("Connect client over HTTP/$httpVersion (GET: $useHttpGet) gets FAILED_PRECONDITION", async ({ httpVersion, useHttpGet }) => {
    const server = await startTls();
    const transport = createConnectTransport({ baseUrl: `http://127.0.0.1:${server.port}`, httpVersion, useHttpGet });

    const error = await createClient(IntegrationService, transport)
      .listIntegrations({})
      .then(() => undefined, (thrown: unknown) => ConnectError.from(thrown));

    expect(error?.code).toBe(Code.FailedPrecondition);
    expect(error?.rawMessage).toBe(EXPECTS_TLS_MESSAGE);
  });

  test("grpc-js insecure client gets FAILED_PRECONDITION", async () => {
    const server = await startTls();
    const client = new grpc.Client(`127.0.0.1:${server.port}`, grpc.credentials.createInsecure());
    try {
      const error = await new Promise<grpc.ServiceError | null>((resolve) => {
        client.makeUnaryRequest(
          "/smsgateway.v1.IntegrationService/ListIntegrations",
          (message: Buffer) => message,
          (bytes: Buffer) => bytes,
          Buffer.alloc(0),
          (thrown) => resolve(thrown),
        );
      });

      expect(error?.code).toBe(grpc.status.FAILED_PRECONDITION);
      expect(error?.details).toBe(EXPECTS_TLS_MESSAGE);
    } finally {
      client.close();
    }
  });

  test("HTTPS request is still served", async () => {
    const server = await startTls();

    const body = await new Promise<string>((resolve, reject) => {
      https
        .get({ host: "127.0.0.1", port: server.port, path: "/", ca: credentials.cert, servername: "localhost" }, (response) => {
          let text = "";
          response.setEncoding("utf8");
          response.on("data", (chunk: string) => (text += chunk));
          response.on("end", () => resolve(text));
        })
        .on("error", reject);
    });

    expect(body).toBe("ok");
  });

  test("cleartext connection logs one warning", async () => {
    const logLines: Record<string, unknown>[] = [];
    const server = await startTls({}, logLines);

    await holdOpen(server.port, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 5_000);
    await holdOpen(server.port, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 5_000);
    await holdOpen(server.port, Buffer.concat([HTTP2_PREFACE, Buffer.from([0, 0, 0, 0x4, 0, 0, 0, 0, 0])]), 200);

    const warnings = logLines.filter((line) => line.level === 40);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ remoteAddress: "127.0.0.1", protocol: "http/1.x", unloggedSinceLastLine: 0 });
    expect(warnings[0]?.msg).toBe("rejected a cleartext HTTP connection on the TLS port");
  });

  test.each([
    { case: "silent connection", bytes: "" },
    { case: "partial HTTP/2 preface", bytes: "PRI * HTTP/2.0\r\n" },
    { case: "unfinished HTTP/1.1 headers", bytes: "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n" },
    { case: "HTTP/2 preface without request", bytes: HTTP2_PREFACE },
    // Node's own handshakeTimeout would hold it for 120 s.
    { case: "partial TLS ClientHello", bytes: Buffer.from([0x16, 0x03, 0x01, 0x02]) },
  ])("$case is closed after the first-request limit", async ({ bytes }) => {
    const server = await startTls({ firstRequestTimeoutMs: 200 });

    const { closed } = await holdOpen(server.port, bytes, 5_000);

    expect(closed, "the connection stayed open past the first-request limit").toBe(true);
  });

  test("TLS handshake sent byte by byte is closed at the limit", async () => {
    const server = await startTls({ firstRequestTimeoutMs: 300 });
    const socket = net.connect(server.port, "127.0.0.1");
    socket.on("error", () => {});
    const socketClosed = new Promise<boolean>((resolve) => socket.once("close", () => resolve(true)));
    await new Promise((resolve) => socket.once("connect", resolve));
    // A TLS record header that declares a 512-byte ClientHello, then one byte of it every 50 ms.
    socket.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00]));
    const dribble = setInterval(() => socket.write(Buffer.from([0x01])), 50);

    const closed = await Promise.race([socketClosed, new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 3_000))]);
    clearInterval(dribble);
    socket.destroy();

    expect(closed, "a handshake that kept sending bytes outlived the first-request limit").toBe(true);
  });

  test.each([
    { case: "silent connection", bytes: "" },
    { case: "letter and nothing more", bytes: "G" },
    { case: "partial HTTP/2 preface", bytes: "PRI * HTTP/2.0\r\n" },
    { case: "partial TLS ClientHello", bytes: Buffer.from([0x16, 0x03, 0x01, 0x02]) },
  ])("closing ends a $case within the grace period", async ({ bytes }) => {
    const server = await startServer((_request, response) => response.end("ok"), {
      host: "127.0.0.1",
      port: 0,
      tls: credentials,
      firstRequestTimeoutMs: 30_000,
    });
    const socket = net.connect(server.port, "127.0.0.1");
    socket.on("error", () => {});
    const socketClosed = new Promise((resolve) => socket.once("close", resolve));
    await new Promise((resolve) => socket.once("connect", resolve));
    socket.write(bytes);
    // Lets the server read the bytes before it closes.
    await new Promise((resolve) => setTimeout(resolve, 50));

    const startedAt = performance.now();
    await server.close(100);

    expect(performance.now() - startedAt, "closing waited for the first-request limit").toBeLessThan(2_000);
    await socketClosed;
  });

  test("closing lets a TLS request in progress finish", async () => {
    let started!: () => void;
    const requestStarted = new Promise<void>((resolve) => (started = resolve));
    const server = await startServer(
      (_request, response) => {
        started();
        setTimeout(() => response.end("late"), 300);
      },
      { host: "127.0.0.1", port: 0, tls: credentials },
    );

    const body = new Promise<string>((resolve, reject) => {
      https
        .get({ host: "127.0.0.1", port: server.port, path: "/", ca: credentials.cert, servername: "localhost", agent: false }, (response) => {
          let text = "";
          response.setEncoding("utf8");
          response.on("data", (chunk: string) => (text += chunk));
          response.on("end", () => resolve(text));
        })
        .on("error", reject);
    });
    await requestStarted;
    await server.close(5_000);

    expect(await body).toBe("late");
  });
});

describe("CleartextConnectionLog", () => {
  test("counts the connections between lines", async () => {
    const logLines: Record<string, unknown>[] = [];
    const log = new CleartextConnectionLog(capturingLogger(logLines), 100);

    log.record("192.0.2.1", "http/1.x");
    log.record("192.0.2.2", "h2c");
    log.record("192.0.2.3", "http/1.x");
    await new Promise((resolve) => setTimeout(resolve, 150));
    log.record("192.0.2.4", "h2c");

    expect(logLines).toHaveLength(2);
    expect(logLines[0]).toMatchObject({ level: 40, remoteAddress: "192.0.2.1", protocol: "http/1.x", unloggedSinceLastLine: 0 });
    expect(logLines[1]).toMatchObject({ level: 40, remoteAddress: "192.0.2.4", protocol: "h2c", unloggedSinceLastLine: 2 });
  });
});
