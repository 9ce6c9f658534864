// The service started with a short FIRST_REQUEST_TIMEOUT_MS closes each kind of connection that
// sends no request in time: one that sends nothing, one that stops inside its HTTP/1.1 headers,
// and one that stops after the HTTP/2 preface.
import net from "node:net";
import { performance } from "node:perf_hooks";
import { afterAll, beforeAll, expect, test } from "vitest";

import { HTTP2_PREFACE } from "../../src/server/http2-first-request.js";
import { startTestService, type TestService } from "../helpers/service.js";

/** The setting under test: the smallest value it accepts, so that the tests stay fast. */
const LIMIT_MS = 1_000;

/** Time a test waits for the close before it gives up, far below the 60 s default. */
const WAIT_MS = 5_000;

/** Margin for the timers of the service and of the test, which start a moment apart. */
const SLACK_MS = 100;

const CLIENT_SETTINGS = Buffer.from([0, 0, 0, 0x4, 0, 0, 0, 0, 0]);
const SETTINGS_ACK = Buffer.from([0, 0, 0, 0x4, 0x1, 0, 0, 0, 0]);
/** GOAWAY with last stream 0 and error NO_ERROR (RFC 9113 section 6.8). */
const GOAWAY_NO_ERROR = Buffer.from([0, 0, 8, 0x7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);

let service: TestService;

beforeAll(async () => {
  service = await startTestService({ firstRequestTimeoutMs: LIMIT_MS });
});

afterAll(async () => {
  await service.stop();
});

/**
 * Connects, writes `bytes`, and waits up to {@link WAIT_MS} for the service
 * to close the connection. Resolves with the milliseconds from the connect
 * to the close (undefined when it stayed open) and what the service sent.
 */
async function closeAfter(bytes: Buffer): Promise<{ closedAfterMs: number | undefined; received: Buffer }> {
  const socket = net.connect(service.app.server.port, "127.0.0.1");
  socket.on("error", () => {});
  const chunks: Buffer[] = [];
  socket.on("data", (chunk: Buffer) => chunks.push(chunk));
  await new Promise<void>((resolve) => socket.once("connect", () => resolve()));
  const connectedAt = performance.now();
  socket.write(bytes);

  const closedAfterMs = await new Promise<number | undefined>((resolve) => {
    const timer = setTimeout(() => resolve(undefined), WAIT_MS);
    socket.once("close", () => {
      clearTimeout(timer);
      resolve(performance.now() - connectedAt);
    });
  });
  socket.destroy();
  return { closedAfterMs, received: Buffer.concat(chunks) };
}

// The cases run at once, so that the file takes about as long as its slowest case.
test.concurrent.each([
  {
    name: "silent connection",
    bytes: Buffer.alloc(0),
    latestMs: LIMIT_MS + SLACK_MS * 5,
    replyStart: "",
    replyEnd: Buffer.alloc(0),
  },
  {
    name: "unfinished HTTP/1.1 headers",
    bytes: Buffer.from("POST /smsgateway.v1.SmsService/SendSms HTTP/1.1\r\nHost: 127.0.0.1\r\n"),
    // Node checks the header limit every LIMIT_MS, so the close may come one interval late.
    latestMs: 2 * LIMIT_MS + SLACK_MS * 5,
    replyStart: "HTTP/1.1 408 ",
    replyEnd: Buffer.alloc(0),
  },
  {
    name: "HTTP/2 preface without request",
    bytes: Buffer.concat([HTTP2_PREFACE, CLIENT_SETTINGS, SETTINGS_ACK]),
    latestMs: LIMIT_MS + SLACK_MS * 5,
    replyStart: "",
    replyEnd: GOAWAY_NO_ERROR,
  },
])("$name is closed in time", async ({ bytes, latestMs, replyStart, replyEnd }) => {
  const { closedAfterMs, received } = await closeAfter(bytes);

  expect(closedAfterMs, "the connection stayed open").toBeDefined();
  expect(closedAfterMs!).toBeGreaterThanOrEqual(LIMIT_MS - SLACK_MS);
  expect(closedAfterMs!).toBeLessThanOrEqual(latestMs);
  expect(received.toString("latin1").startsWith(replyStart)).toBe(true);
  expect(received.subarray(received.length - replyEnd.length)).toEqual(replyEnd);
});
