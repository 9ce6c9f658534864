import net from "node:net";
import type { AddressInfo } from "node:net";
import { afterEach, expect, test, vi } from "vitest";
import { awaitFirstRequest } from "../../src/server/first-request-router.js";
import { EMPTY_SETTINGS_FRAME, HTTP2_PREFACE, type FirstRequest } from "../../src/server/http2-first-request.js";

const CLIENT_SETTINGS = Buffer.from([0, 0, 0, 0x4, 0, 0, 0, 0, 0]);
const SETTINGS_ACK = Buffer.from([0, 0, 0, 0x4, 0x1, 0, 0, 0, 0]);
// HEADERS on stream 1, END_HEADERS: :method POST, :path /a/b, content-type application/grpc.
const BLOCK = Buffer.concat([Buffer.from([0x83, 0x04, 4]), Buffer.from("/a/b"), Buffer.from([0x0f, 0x10, 16]), Buffer.from("application/grpc")]);
const HEADERS = Buffer.concat([Buffer.from([0, 0, BLOCK.length, 0x1, 0x4, 0, 0, 0, 1]), BLOCK]);

const servers: net.Server[] = [];

afterEach(() => {
  for (const server of servers.splice(0)) {
    server.close();
  }
});

/** Starts a server that holds each connection with awaitFirstRequest; resolves the handover's request and the bytes read after it. */
async function startServer(timeoutMs: number, firstRequestTimeoutMs?: number) {
  let handedOver!: (value: { request: FirstRequest | undefined; bytes: Promise<Buffer> }) => void;
  const handover = new Promise<{ request: FirstRequest | undefined; bytes: Promise<Buffer> }>((resolve) => (handedOver = resolve));
  const server = net.createServer((socket) => {
    awaitFirstRequest(
      socket,
      Buffer.alloc(0),
      (request) => {
        const bytes = new Promise<Buffer>((resolve) => {
          const chunks: Buffer[] = [];
          socket.on("data", (chunk: Buffer) => {
            chunks.push(chunk);
            resolve(Buffer.concat(chunks));
          });
          socket.resume();
        });
        handedOver({ request, bytes });
      },
      timeoutMs,
      firstRequestTimeoutMs,
    );
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { port: (server.address() as AddressInfo).port, handover };
}

function collect(socket: net.Socket): { received: Buffer[]; ended: Promise<void> } {
  const received: Buffer[] = [];
  socket.on("data", (chunk: Buffer) => received.push(chunk));
  return { received, ended: new Promise((resolve) => socket.once("close", () => resolve())) };
}

test("request and acknowledgement hand over", async () => {
  const { port, handover } = await startServer(10_000);
  const client = net.connect(port, "127.0.0.1");
  const { received } = collect(client);
  client.write(Buffer.concat([HTTP2_PREFACE, CLIENT_SETTINGS, HEADERS]));
  await expect.poll(() => Buffer.concat(received).length, { timeout: 10_000 }).toBe(EMPTY_SETTINGS_FRAME.length);
  client.write(SETTINGS_ACK);

  const { request, bytes } = await handover;

  expect(request).toEqual({ path: "/a/b", contentType: "application/grpc" });
  expect((await bytes).equals(Buffer.concat([HTTP2_PREFACE, CLIENT_SETTINGS, HEADERS]))).toBe(true);
  expect(Buffer.concat(received).equals(EMPTY_SETTINGS_FRAME)).toBe(true);
  client.destroy();
});

test("missing acknowledgement ends with GOAWAY", async () => {
  const { port } = await startServer(100);
  const client = net.connect(port, "127.0.0.1");
  const { received, ended } = collect(client);
  client.write(Buffer.concat([HTTP2_PREFACE, CLIENT_SETTINGS, HEADERS]));

  await ended;
  const bytes = Buffer.concat(received);

  expect(bytes.subarray(0, 9).equals(EMPTY_SETTINGS_FRAME)).toBe(true);
  const goaway = bytes.subarray(9);
  expect(goaway[3]).toBe(0x7);
  expect(goaway.readUInt32BE(13)).toBe(0x4);
});

test("acknowledged connection without a request ends with GOAWAY", async () => {
  const { port } = await startServer(10_000, 200);
  const client = net.connect(port, "127.0.0.1");
  const { received, ended } = collect(client);
  client.write(Buffer.concat([HTTP2_PREFACE, CLIENT_SETTINGS]));
  await expect.poll(() => Buffer.concat(received).length, { timeout: 10_000 }).toBe(EMPTY_SETTINGS_FRAME.length);
  client.write(SETTINGS_ACK);

  await ended;
  const goaway = Buffer.concat(received).subarray(EMPTY_SETTINGS_FRAME.length);

  expect(goaway.subarray(0, 9).equals(Buffer.from([0, 0, 8, 0x7, 0, 0, 0, 0, 0]))).toBe(true);
  expect(goaway.readUInt32BE(9)).toBe(0);
  expect(goaway.readUInt32BE(13)).toBe(0);
});

test("request after the GOAWAY is not handed over", async () => {
  vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
  try {
    let handedOver = false;
    const server = net.createServer((socket) => {
      // Registered first, so the timers fire before the router reads the chunk that contains the request.
      socket.on("data", (chunk: Buffer) => {
        if (chunk.includes(HEADERS)) {
          vi.runOnlyPendingTimers();
        }
      });
      awaitFirstRequest(socket, Buffer.alloc(0), () => (handedOver = true), 10_000, 60_000);
    });
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const client = net.connect((server.address() as AddressInfo).port, "127.0.0.1");
    const { received, ended } = collect(client);
    client.write(Buffer.concat([HTTP2_PREFACE, CLIENT_SETTINGS, SETTINGS_ACK]));
    await expect.poll(() => Buffer.concat(received).length, { timeout: 10_000 }).toBe(EMPTY_SETTINGS_FRAME.length);
    client.write(HEADERS);

    await ended;
    const goaway = Buffer.concat(received).subarray(EMPTY_SETTINGS_FRAME.length);

    expect(goaway.readUInt32BE(13)).toBe(0);
    expect(handedOver).toBe(false);
  } finally {
    vi.useRealTimers();
  }
});
