import { setTimeout as sleep } from "node:timers/promises";

import { Code } from "@connectrpc/connect";
import { describe, expect, test } from "vitest";

import { ScriptedGateway, type ScriptedGatewayOptions } from "../helpers/scripted-gateway.js";
import { accepted, inOrder } from "../delivery/fixtures.js";
import {
  boundMs,
  CONNECT_HTTP2,
  failureOf,
  garbageCollector,
  gatewayDetail,
  GRPC_JS,
  MAX_ATTEMPTS,
  responseOf,
  runCase,
  SEND_TIMEOUT_MS,
  waitUntil,
} from "./hostile-harness.js";
import {
  flood,
  replyAfter,
  ReplyProbe,
  resetAfterRequest,
  trickle,
  TRICKLED_TEXT,
} from "./hostile-replies.js";

/** Default `MAX_REPLY_BYTES`. */
const MAX_REPLY_BYTES = 1024 * 1024;
const HUNDRED_MB = 100 * 1024 * 1024;

describe.each([CONNECT_HTTP2, GRPC_JS])("gateway that never replies, over $name", (client) => {
  test("times out after one POST without a key", async () => {
    await runCase({ client, keptAlive: 0 }, async ({ gateway, send }) => {
      gateway.on("/sms", { hang: true });

      const outcome = await send();

      const error = failureOf(outcome);
      expect(error.code).toBe(Code.DeadlineExceeded);
      expect(outcome.elapsedMs).toBeLessThan(boundMs(SEND_TIMEOUT_MS));
      expect(gatewayDetail(error)).toMatchObject({ attempts: 1, outcomeUnknown: true, httpStatus: 0 });
      const posts = gateway.requestsTo("/sms");
      expect(posts).toHaveLength(1);
      expect(posts[0]?.headers["idempotency-key"]).toBeUndefined();
    });
  });

  test("retries with a key, outcome unknown", async () => {
    await runCase({ client, keptAlive: 0 }, async ({ gateway, send }) => {
      gateway.on("/sms", { hang: true });

      const outcome = await send({ idempotencyKey: "never-replies-1" });

      const error = failureOf(outcome);
      expect(error.code).toBe(Code.DeadlineExceeded);
      expect(outcome.elapsedMs).toBeLessThan(boundMs(SEND_TIMEOUT_MS));
      const detail = gatewayDetail(error);
      expect(detail.outcomeUnknown).toBe(true);
      const posts = gateway.requestsTo("/sms");
      // Each attempt gets SEND_ATTEMPT_TIMEOUT_MS, so a second one fits in SEND_TIMEOUT_MS.
      expect(posts.length).toBeGreaterThanOrEqual(2);
      expect(posts.length).toBeLessThanOrEqual(MAX_ATTEMPTS);
      expect(detail.attempts).toBe(posts.length);
      expect(posts.map((post) => post.headers["idempotency-key"])).toEqual(posts.map(() => "never-replies-1"));
    });
  });
});

describe("gateway that trickles its body", () => {
  test("counts a trickled 2xx as sent", async () => {
    const probe = new ReplyProbe();
    await runCase({ client: CONNECT_HTTP2, keptAlive: 0 }, async ({ gateway, send }) => {
      gateway.on("/sms", trickle(200, 50, probe));

      const outcome = await send();

      const response = responseOf(outcome);
      expect(outcome.elapsedMs).toBeLessThan(boundMs(SEND_TIMEOUT_MS));
      expect(response).toMatchObject({ id: "", gatewayStatus: 200, attempts: 1 });
      expect(response.warnings).toEqual(["reply body did not arrive within the deadline, so there is no id at data.id"]);
      expect(gateway.requestsTo("/sms")).toHaveLength(1);
      await probe.allClosed();
      expect(probe.abortedAfterMs).toBeDefined();
    });
  });

  test.each([500, 503])("fails a trickled %d with its excerpt", async (status) => {
    await runCase({ client: CONNECT_HTTP2, keptAlive: 0 }, async ({ gateway, send }) => {
      gateway.on("/sms", trickle(status, 50));

      const outcome = await send();

      const error = failureOf(outcome);
      expect(error.code).toBe(Code.Unavailable);
      expect(outcome.elapsedMs).toBeLessThan(boundMs(SEND_TIMEOUT_MS));
      const detail = gatewayDetail(error);
      expect(detail).toMatchObject({ httpStatus: status, attempts: 1, bodyTruncated: true });
      expect(detail.bodyExcerpt.length).toBeGreaterThan(0);
      expect(detail.bodyExcerpt).toBe(TRICKLED_TEXT.repeat(40).slice(0, detail.bodyExcerpt.length));
      // Reading the excerpt took the whole deadline, so even a 503 is not retried.
      expect(gateway.requestsTo("/sms")).toHaveLength(1);
    });
  });
});

describe("gateway that answers 100 MB", () => {
  test.each([
    ["with a Content-Length", true],
    ["chunked", false],
  ])("reads at most MAX_REPLY_BYTES of a body %s", async (_name, announceLength) => {
    const probe = new ReplyProbe();
    await runCase({ client: CONNECT_HTTP2, keptAlive: 0 }, async ({ gateway, send }) => {
      gateway.on("/sms", flood(HUNDRED_MB, { announceLength }, probe));

      const outcome = await send();

      const response = responseOf(outcome);
      expect(outcome.elapsedMs).toBeLessThan(boundMs(SEND_TIMEOUT_MS));
      expect(response).toMatchObject({ id: "", gatewayStatus: 200, attempts: 1 });
      expect(response.warnings).toEqual([
        `reply is larger than ${MAX_REPLY_BYTES} bytes and was not parsed, so there is no id at data.id`,
      ]);
      await probe.allClosed();
      // The socket buffers of both ends hold a few MB more than the service reads.
      expect(probe.bytesWritten).toBeLessThan(HUNDRED_MB / 4);
      expect(gateway.requestsTo("/sms")).toHaveLength(1);
    });
  });

  test("keeps service memory flat", async () => {
    const gc = garbageCollector();
    const rounds = 5;
    await runCase({ client: CONNECT_HTTP2, keptAlive: 0 }, async ({ gateway, send }) => {
      gateway.on("/sms", flood(HUNDRED_MB, { announceLength: false }));
      // A first round warms up the connection pool and the code paths.
      responseOf(await send());
      gc();
      const before = process.memoryUsage();

      for (let round = 0; round < rounds; round++) {
        const outcome = await send();
        expect(responseOf(outcome).gatewayStatus).toBe(200);
        expect(outcome.elapsedMs).toBeLessThan(boundMs(SEND_TIMEOUT_MS));
      }
      gc();
      const after = process.memoryUsage();

      // A sanity bound: one round that buffered the whole reply would add 100 MB.
      expect(after.rss - before.rss).toBeLessThan(100 * 1024 * 1024);
      expect(after.heapUsed - before.heapUsed).toBeLessThan(100 * 1024 * 1024);
      expect(gateway.requestsTo("/sms")).toHaveLength(rounds + 1);
    });
  });
});

describe.each([CONNECT_HTTP2, GRPC_JS])("gateway that resets the connection, over $name", (client) => {
  test("fails once without a key", async () => {
    await runCase({ client, keptAlive: 0 }, async ({ gateway, send }) => {
      gateway.on("/sms", resetAfterRequest());

      const outcome = await send();

      const error = failureOf(outcome);
      expect(error.code).toBe(Code.Unavailable);
      expect(outcome.elapsedMs).toBeLessThan(boundMs(SEND_TIMEOUT_MS));
      expect(gatewayDetail(error)).toMatchObject({ attempts: 1, outcomeUnknown: true, httpStatus: 0 });
      expect(error.rawMessage).toContain("ECONNRESET");
      expect(gateway.requestsTo("/sms")).toHaveLength(1);
    });
  });

  test("retries every reset with a key", async () => {
    await runCase({ client, keptAlive: 0 }, async ({ gateway, send }) => {
      gateway.on("/sms", resetAfterRequest());

      const outcome = await send({ idempotencyKey: "reset-1" });

      const error = failureOf(outcome);
      expect(error.code).toBe(Code.Unavailable);
      expect(outcome.elapsedMs).toBeLessThan(boundMs(SEND_TIMEOUT_MS));
      expect(gatewayDetail(error)).toMatchObject({ attempts: MAX_ATTEMPTS, outcomeUnknown: true });
      expect(gateway.requestsTo("/sms")).toHaveLength(MAX_ATTEMPTS);
    });
  });

  test("sends after a reset with a key", async () => {
    await runCase({ client, keptAlive: 1 }, async ({ gateway, send }) => {
      gateway.on("/sms", inOrder(resetAfterRequest(), accepted("m-after-reset")));

      const outcome = await send({ idempotencyKey: "reset-2" });

      expect(responseOf(outcome)).toMatchObject({ id: "m-after-reset", attempts: 2 });
      expect(outcome.elapsedMs).toBeLessThan(boundMs(SEND_TIMEOUT_MS));
      expect(gateway.requestsTo("/sms")).toHaveLength(2);
    });
  });
});

describe("gateway that closes idle kept-alive connections", () => {
  const closers: Array<[string, ScriptedGatewayOptions]> = [
    ["after its keepAliveTimeout of 50 ms", { keepAliveTimeoutMs: 50 }],
    ["silently after 50 ms idle", { dropIdleAfterMs: 50 }],
  ];

  test.each(closers)("sends every SMS when it closes %s", async (_name, gatewayOptions) => {
    const sends = 4;
    await runCase({ client: CONNECT_HTTP2, gateway: gatewayOptions, keptAlive: 1 }, async ({ gateway, send }) => {
      gateway.on("/sms", accepted("m-idle"));

      const responses = [];
      for (let index = 0; index < sends; index++) {
        if (index > 0) {
          // Longer than the gateway keeps an idle connection, so each send finds its last one closed.
          await sleep(200);
        }
        const outcome = await send({ content: `message ${index}` });
        expect(outcome.elapsedMs).toBeLessThan(boundMs(SEND_TIMEOUT_MS));
        responses.push(responseOf(outcome));
      }

      expect(responses.map((response) => [response.id, response.attempts])).toEqual(Array(sends).fill(["m-idle", 1]));
      expect(gateway.requestsTo("/sms").map((post) => JSON.parse(post.body).content)).toEqual(
        Array.from({ length: sends }, (_unused, index) => `message ${index}`),
      );
      expect(gateway.connectionsAccepted).toBe(sends);
    });
  });
});

describe("gateway that drops a kept-alive connection as a request arrives", () => {
  const dropsReused = { client: CONNECT_HTTP2, gateway: { dropReusedConnections: true }, keptAlive: 1 };

  test("reports the outcome unknown without a key", async () => {
    await runCase(dropsReused, async ({ gateway, send }) => {
      gateway.on("/sms", accepted("m-reuse"));
      responseOf(await send({ content: "first" }));

      const outcome = await send({ content: "second" });

      const error = failureOf(outcome);
      expect(error.code).toBe(Code.Unavailable);
      expect(outcome.elapsedMs).toBeLessThan(boundMs(SEND_TIMEOUT_MS));
      // The request was written, so the service cannot know that the gateway never read it.
      expect(gatewayDetail(error)).toMatchObject({ attempts: 1, outcomeUnknown: true });
      expect(gateway.requestsTo("/sms").map((post) => JSON.parse(post.body).content)).toEqual(["first"]);
      expect(gateway.connectionsAccepted).toBe(1);
    });
  });

  test("resends on a new connection with a key", async () => {
    await runCase(dropsReused, async ({ gateway, send }) => {
      gateway.on("/sms", accepted("m-reuse"));
      responseOf(await send({ content: "first", idempotencyKey: "reuse-1" }));

      const outcome = await send({ content: "second", idempotencyKey: "reuse-2" });

      expect(responseOf(outcome)).toMatchObject({ id: "m-reuse", attempts: 2 });
      expect(outcome.elapsedMs).toBeLessThan(boundMs(SEND_TIMEOUT_MS));
      expect(gateway.requestsTo("/sms").map((post) => JSON.parse(post.body).content)).toEqual(["first", "second"]);
      expect(gateway.connectionsAccepted).toBe(2);
    });
  });
});

describe("gateway that rate-limits with 429", () => {
  const retryAfterCases: Array<[string, () => string]> = [
    ["1 second", () => "1"],
    ["an HTTP date", () => new Date(Date.now() + 1_000).toUTCString()],
    ["nonsense", () => "soon"],
  ];

  test.each(retryAfterCases)("sends after a 429 with Retry-After as %s", async (_name, retryAfter) => {
    await runCase({ client: CONNECT_HTTP2, keptAlive: 1 }, async ({ gateway, send }) => {
      gateway.on("/sms", inOrder({ status: 429, headers: { "retry-after": retryAfter() } }, accepted("m-429")));

      const outcome = await send();

      expect(responseOf(outcome)).toMatchObject({ id: "m-429", attempts: 2 });
      expect(outcome.elapsedMs).toBeLessThan(boundMs(SEND_TIMEOUT_MS));
      expect(gateway.requestsTo("/sms")).toHaveLength(2);
    });
  });

  test("passes Retry-After on after 429s", async () => {
    await runCase({ client: CONNECT_HTTP2, keptAlive: 1 }, async ({ gateway, send }) => {
      gateway.on("/sms", { status: 429, headers: { "retry-after": "1" }, json: { error: "slow down" } });

      const outcome = await send();

      const error = failureOf(outcome);
      expect(error.code).toBe(Code.ResourceExhausted);
      expect(outcome.elapsedMs).toBeLessThan(boundMs(SEND_TIMEOUT_MS));
      expect(error.metadata.get("retry-after")).toBe("1");
      const detail = gatewayDetail(error);
      expect(detail).toMatchObject({ httpStatus: 429, bodyExcerpt: '{"error":"slow down"}' });
      expect(error.rawMessage).toContain("the deadline left no time for another");
      expect(gateway.requestsTo("/sms")).toHaveLength(detail.attempts);
      expect(detail.attempts).toBeLessThanOrEqual(MAX_ATTEMPTS);
    });
  });
});

describe("gateway that is briefly unavailable", () => {
  test("sends once after 503, 503, then 200", async () => {
    await runCase({ client: CONNECT_HTTP2, keptAlive: 1 }, async ({ gateway, send }) => {
      gateway.on("/sms", inOrder({ status: 503 }, { status: 503 }, accepted("m-503")));

      const outcome = await send();

      expect(responseOf(outcome)).toMatchObject({ id: "m-503", attempts: 3, gatewayStatus: 200 });
      expect(outcome.elapsedMs).toBeLessThan(boundMs(SEND_TIMEOUT_MS));
      expect(gateway.requestsTo("/sms")).toHaveLength(3);
    });
  });
});

describe("gateway that redirects", () => {
  test.each([302, 307])("does not follow HTTP %d to another server", async (status) => {
    await runCase({ client: CONNECT_HTTP2, keptAlive: 1 }, async ({ gateway, send }) => {
      const other = await ScriptedGateway.start();
      try {
        other.on("/", accepted("m-stolen"));
        gateway.on("/sms", { status, headers: { location: other.url("/") } });

        const outcome = await send();

        const error = failureOf(outcome);
        expect(error.code).toBe(Code.FailedPrecondition);
        expect(outcome.elapsedMs).toBeLessThan(boundMs(SEND_TIMEOUT_MS));
        expect(error.rawMessage).toContain(`HTTP ${status}`);
        expect(error.rawMessage).toContain(JSON.stringify(other.url("/")));
        expect(gatewayDetail(error)).toMatchObject({ httpStatus: status, attempts: 1 });
        expect(gateway.requestsTo("/sms")).toHaveLength(1);
        expect(other.connectionsAccepted).toBe(0);
      } finally {
        await other.close();
      }
    });
  });
});

describe.each([CONNECT_HTTP2, GRPC_JS])("gateway that replies after the caller's deadline, over $name", (client) => {
  test("aborts the request at the caller's deadline", async () => {
    const callerTimeoutMs = 300;
    const gatewayDelayMs = 800;
    const probe = new ReplyProbe();
    await runCase({ client, keptAlive: 0 }, async ({ gateway, send }) => {
      gateway.on("/sms", replyAfter(gatewayDelayMs, "m-late", probe));

      const outcome = await send({}, { timeoutMs: callerTimeoutMs });

      const error = failureOf(outcome);
      expect(error.code).toBe(Code.DeadlineExceeded);
      expect(outcome.elapsedMs).toBeLessThan(boundMs(callerTimeoutMs));
      await waitUntil(() => probe.abortedAfterMs !== undefined, boundMs(gatewayDelayMs));
      expect(probe.abortedAfterMs).toBeLessThan(gatewayDelayMs);
      expect(probe.finished).toBe(0);
      expect(gateway.requestsTo("/sms")).toHaveLength(1);
    });
  });
});
