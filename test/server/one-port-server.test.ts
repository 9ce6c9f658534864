import net from "node:net";
import * as grpc from "@grpc/grpc-js";
import { afterEach, expect, test } from "vitest";
import { HTTP2_PREFACE } from "../../src/server/http2-first-request.js";
import { startServer, type ListenOptions, type RunningServer } from "../../src/server/one-port-server.js";
import { holdOpen } from "../helpers/raw-connection.js";

const servers: RunningServer[] = [];

afterEach(async () => {
  for (const server of servers.splice(0)) {
    await server.close(0);
  }
});

/** Starts a server whose handler responds to every request with 200, with the given limits. */
async function start(options: Partial<ListenOptions>): Promise<RunningServer> {
  const server = await startServer((_request, response) => response.end("ok"), { host: "127.0.0.1", port: 0, ...options });
  servers.push(server);
  return server;
}

test("silent connection is closed", async () => {
  const server = await start({ firstRequestTimeoutMs: 200 });

  const { closed } = await holdOpen(server.port, "", 5_000);

  expect(closed, "a connection that sends nothing stayed open").toBe(true);
});

test("partial HTTP/2 preface is closed", async () => {
  const server = await start({ firstRequestTimeoutMs: 200 });

  const { closed } = await holdOpen(server.port, "PRI * HTTP/2.0\r\n", 5_000);

  expect(closed, "a connection that stopped inside the HTTP/2 preface stayed open").toBe(true);
});

test("unfinished HTTP/1.1 headers time out", async () => {
  const server = await start({ http1Timeouts: { headersTimeout: 300, requestTimeout: 600, connectionsCheckingInterval: 100 } });

  const { closed, received } = await holdOpen(server.port, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n", 5_000);

  expect(closed, "a connection that never finished its headers stayed open").toBe(true);
  expect(received).toMatch(/^HTTP\/1\.1 408 /);
});

test("prompt HTTP/1.1 request is served", async () => {
  const server = await start({ firstRequestTimeoutMs: 200 });

  const { received } = await holdOpen(server.port, "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", 5_000);

  expect(received).toMatch(/^HTTP\/1\.1 200 /);
});

test("HTTP/2 connection has one limit for preface and first request", async () => {
  const server = await start({ firstRequestTimeoutMs: 1_000, grpcJs: { server: new grpc.Server(), paths: new Set(["/a/B"]) } });
  const socket = net.connect(server.port, "127.0.0.1");
  socket.on("error", () => {});
  // Read what the server sends, so that its end of the connection is seen.
  socket.resume();
  await new Promise<void>((resolve) => socket.once("connect", () => resolve()));
  const connectedAt = performance.now();
  const closed = new Promise<number>((resolve) => socket.once("close", () => resolve(performance.now() - connectedAt)));

  // Most of the limit passes before the preface is complete; the rest is all the first request gets.
  socket.write(HTTP2_PREFACE.subarray(0, 10));
  await new Promise((resolve) => setTimeout(resolve, 900));
  socket.write(Buffer.concat([HTTP2_PREFACE.subarray(10), Buffer.from([0, 0, 0, 0x4, 0, 0, 0, 0, 0]), Buffer.from([0, 0, 0, 0x4, 0x1, 0, 0, 0, 0])]));

  expect(await closed).toBeLessThan(1_700);
});
