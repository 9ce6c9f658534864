import { once } from "node:events";
import { createServer } from "node:http";
import { Writable } from "node:stream";

import { pino } from "pino";
import { describe, expect, test } from "vitest";

import type { SmsMessage } from "../../src/dispatch/dispatcher.js";
import { MAX_RETRY_AFTER_SECONDS } from "../../src/dispatch/retry-after.js";
import { ServiceLifecycle } from "../../src/server/service-lifecycle.js";
import { closedLoopbackUrl, type ScriptedReply } from "../helpers/scripted-gateway.js";
import { gatewayErrorOf } from "../dispatch/fixtures.js";
import { accepted, inOrder, setUpDeliveryTests, type HarnessOptions } from "./fixtures.js";

const message: SmsMessage = { to: "+15551234567", content: "hi" };
const keyed: SmsMessage = { ...message, idempotencyKey: "key-1" };
/** Slack for timers that fire a little early or late, in milliseconds. */
const TIMER_SLACK_MS = 50;

const env = setUpDeliveryTests();
const harness = (options: Partial<HarnessOptions> = {}) => env.harness(options);

/** Milliseconds between the arrivals of the first two SMS requests. */
function gapBetweenFirstTwo(arrivals: number[]): number {
  return (arrivals[1] ?? Number.NaN) - (arrivals[0] ?? Number.NaN);
}

/** Returns a log stream that calls `action` on each "retrying SMS send" line. */
function onRetryLog(action: () => void): Writable {
  return new Writable({
    write(chunk: Buffer, _encoding, callback) {
      if (chunk.toString().includes("retrying SMS send")) {
        action();
      }
      callback();
    },
  });
}

/** Script that records when each request arrives, then replies in order. */
function timedInOrder(arrivals: number[], ...replies: ScriptedReply[]) {
  const next = inOrder(...replies);
  return (request: Parameters<typeof next>[0]) => {
    arrivals.push(performance.now());
    return next(request);
  };
}

describe("Delivery retries", () => {
  test("sends once after 503, 503, then 200", async () => {
    env.gateway.on("/sms", inOrder({ status: 503 }, { status: 503 }, accepted("m-503")));
    const { delivery, integration } = await harness();

    const result = await delivery.send(integration, message);

    expect(result).toMatchObject({ id: "m-503", attempts: 3, replayed: false, httpStatus: 200 });
    expect(env.gateway.requestsTo("/sms")).toHaveLength(3);
  });

  test("retries a 408 without a key", async () => {
    env.gateway.on("/sms", inOrder({ status: 408 }, accepted("m-408")));
    const { delivery, integration } = await harness();

    const result = await delivery.send(integration, message);

    expect(result).toMatchObject({ id: "m-408", attempts: 2, httpStatus: 200 });
    expect(env.gateway.requestsTo("/sms")).toHaveLength(2);
  });

  test("waits the Retry-After seconds of a 429", async () => {
    const arrivals: number[] = [];
    env.gateway.on("/sms", timedInOrder(arrivals, { status: 429, headers: { "retry-after": "1" } }, accepted()));
    const { delivery, integration } = await harness();

    const result = await delivery.send(integration, message);

    expect(result.attempts).toBe(2);
    expect(gapBetweenFirstTwo(arrivals)).toBeGreaterThanOrEqual(1_000 - TIMER_SLACK_MS);
  });

  test("waits until the Retry-After HTTP date of a 429", async () => {
    const arrivals: number[] = [];
    // Whole seconds only: the date lies 1 to 2 seconds ahead, and the wait is rounded up.
    const date = new Date(Date.now() + 2_000).toUTCString();
    env.gateway.on("/sms", timedInOrder(arrivals, { status: 429, headers: { "retry-after": date } }, accepted()));
    const { delivery, integration } = await harness();

    const result = await delivery.send(integration, message);

    expect(result.attempts).toBe(2);
    expect(gapBetweenFirstTwo(arrivals)).toBeGreaterThanOrEqual(1_000 - TIMER_SLACK_MS);
  });

  test.each(["soon", "-5", "1.5", "Tue, 99 Foo 2026 00:00:00 GMT", ""])(
    "ignores the nonsense Retry-After %j and backs off",
    async (value) => {
      env.gateway.on("/sms", inOrder({ status: 429, headers: { "retry-after": value } }, accepted()));
      const { delivery, integration } = await harness({ random: () => 0.5 });

      const result = await delivery.send(integration, message);

      expect(result.attempts).toBe(2);
    },
  );

  test("does not wait for a Retry-After above RETRY_AFTER_MAX_MS", async () => {
    env.gateway.on("/sms", { status: 503, headers: { "retry-after": "60" } });
    const { delivery, integration } = await harness({ settings: { retryAfterMaxMs: 1_000 } });

    const error = await gatewayErrorOf(delivery.send(integration, message));

    expect(error.info).toMatchObject({ failure: "unavailable", httpStatus: 503, attempts: 1, retryAfterSeconds: 60 });
    expect(error.message).toContain("RETRY_AFTER_MAX_MS");
    expect(env.gateway.requestsTo("/sms")).toHaveLength(1);
  });

  test("does not wait for a Retry-After past safe integers", async () => {
    env.gateway.on("/sms", { status: 503, headers: { "retry-after": "99999999999999999999" } });
    const { delivery, integration } = await harness();

    const error = await gatewayErrorOf(delivery.send(integration, message));

    expect(error.info).toMatchObject({ failure: "unavailable", attempts: 1, retryAfterSeconds: MAX_RETRY_AFTER_SECONDS });
    expect(error.message).toContain("RETRY_AFTER_MAX_MS");
    expect(env.gateway.requestsTo("/sms")).toHaveLength(1);
  });

  test("does not wait for a Retry-After past the deadline", async () => {
    env.gateway.on("/sms", { status: 429, headers: { "retry-after": "2" } });
    const { delivery, integration } = await harness();

    const error = await gatewayErrorOf(delivery.send(integration, message, { deadlineMs: 1_000 }));

    expect(error.info).toMatchObject({ failure: "rate_limited", attempts: 1 });
    expect(error.message).toContain("the deadline left no time for another");
    expect(env.gateway.requestsTo("/sms")).toHaveLength(1);
  });

  test("counts no attempt for a spent deadline", async () => {
    env.gateway.on("/sms", accepted());
    const { delivery, integration } = await harness();

    const error = await gatewayErrorOf(delivery.send(integration, message, { deadlineMs: 0 }));

    expect(error.info).toMatchObject({ failure: "timeout", attempts: 0 });
    expect(error.message).toMatch(/so nothing was sent\. Allow a longer deadline\.$/);
    expect(env.gateway.requestsTo("/sms")).toHaveLength(0);
  });

  test.each([500, 502, 504])("does not retry HTTP %d without an idempotency key", async (status) => {
    env.gateway.on("/sms", inOrder({ status }, accepted()));
    const { delivery, integration } = await harness();

    const error = await gatewayErrorOf(delivery.send(integration, message));

    expect(error.info).toMatchObject({ failure: "unavailable", httpStatus: status, attempts: 1 });
    expect(error.info.outcomeUnknown).toBeUndefined();
    expect(error.message).toContain("without an idempotency_key a retry could send the SMS twice. Set idempotency_key to allow retries.");
    expect(env.gateway.requestsTo("/sms")).toHaveLength(1);
  });

  test.each([500, 502, 504])("retries HTTP %d with an idempotency key", async (status) => {
    env.gateway.on("/sms", inOrder({ status }, accepted("m-keyed")));
    const { delivery, integration } = await harness();

    const result = await delivery.send(integration, keyed);

    expect(result).toMatchObject({ id: "m-keyed", attempts: 2 });
    expect(env.gateway.requestsTo("/sms")).toHaveLength(2);
  });

  test("reports a reset after the request as unknown without a key", async () => {
    env.gateway.on("/sms", inOrder({ reset: true }, accepted()));
    const { delivery, integration } = await harness();

    const error = await gatewayErrorOf(delivery.send(integration, message));

    expect(error.info).toMatchObject({ failure: "unavailable", httpStatus: 0, attempts: 1, outcomeUnknown: true });
    expect(error.message).toContain("may have received the request");
    expect(env.gateway.requestsTo("/sms")).toHaveLength(1);
  });

  test("retries a reset after the request with a key", async () => {
    env.gateway.on("/sms", inOrder({ reset: true }, accepted("m-after-reset")));
    const { delivery, integration } = await harness();

    const result = await delivery.send(integration, keyed);

    expect(result).toMatchObject({ id: "m-after-reset", attempts: 2 });
    expect(env.gateway.requestsTo("/sms")).toHaveLength(2);
  });

  test("retries a stalled attempt with a key within the deadline", async () => {
    env.gateway.on("/sms", inOrder({ hang: true }, accepted("m-after-stall")));
    const { delivery, integration } = await harness({ settings: { attemptTimeoutMs: 300 } });

    const result = await delivery.send(integration, keyed);

    expect(result).toMatchObject({ id: "m-after-stall", attempts: 2 });
  });

  test("reports a stalled attempt without a key as an unknown timeout", async () => {
    env.gateway.on("/sms", inOrder({ hang: true }, accepted()));
    const { delivery, integration } = await harness({ settings: { attemptTimeoutMs: 100 } });

    const error = await gatewayErrorOf(delivery.send(integration, message, { deadlineMs: 400 }));

    expect(error.info).toMatchObject({ failure: "timeout", attempts: 1, outcomeUnknown: true });
    expect(error.message).toContain("within 400 ms");
    expect(error.message).not.toContain("same idempotency_key");
    expect(env.gateway.requestsTo("/sms")).toHaveLength(1);
  });

  test("tells a keyed send with an unknown outcome how a repeat sends", async () => {
    env.gateway.on("/sms", { hang: true });
    const { delivery, integration } = await harness({ settings: { attemptTimeoutMs: 100, maxAttempts: 2 } });

    const error = await gatewayErrorOf(delivery.send(integration, keyed, { deadlineMs: 1_000 }));

    expect(error.info).toMatchObject({ failure: "timeout", attempts: 2, outcomeUnknown: true });
    expect(error.message).toContain("Before sending it again, check with the gateway.");
    expect(error.message).toMatch(/A repeat with the same idempotency_key sends again with the same Idempotency-Key header, which a gateway that deduplicates by it ignores\.$/);
  });

  test("keeps an earlier unknown outcome after a final rejection", async () => {
    env.gateway.on("/sms", inOrder({ reset: true }, { status: 409, json: { error: "duplicate" } }));
    const { delivery, integration } = await harness();

    const error = await gatewayErrorOf(delivery.send(integration, keyed));

    expect(error.info).toMatchObject({ failure: "rejected", httpStatus: 409, attempts: 2, outcomeUnknown: true });
    expect(error.message).toContain("An earlier attempt got no reply");
  });

  test("retries a refused connection until the attempt limit", async () => {
    const { delivery, integration } = await harness({ integration: { baseUrl: await closedLoopbackUrl() } });

    const error = await gatewayErrorOf(delivery.send(integration, message));

    expect(error.info).toMatchObject({ failure: "unavailable", httpStatus: 0, attempts: 3 });
    expect(error.info.outcomeUnknown).toBeUndefined();
    expect(error.message).toContain("ECONNREFUSED");
    expect(error.message).toContain("gave up after 3 attempts");
  });

  test("reaches a gateway that starts listening after a refused connection", async () => {
    const url = await closedLoopbackUrl("/sms");
    const received: string[] = [];
    const late = createServer((request, response) => {
      received.push(request.url ?? "");
      response.writeHead(200, { "content-type": "application/json" });
      response.end(JSON.stringify({ data: { id: "m-late" } }));
    });
    // The gateway starts when the service logs its first retry, so the first attempt is refused.
    const startGateway = () => {
      if (!late.listening) {
        late.listen(Number(new URL(url).port), "127.0.0.1");
      }
    };
    const { delivery, integration } = await harness({
      integration: { baseUrl: url },
      logger: pino({ level: "info" }, onRetryLog(startGateway)),
      settings: { baseDelayMs: 300, maxDelayMs: 300 },
      random: () => 0.99,
    });

    try {
      const result = await delivery.send(integration, message);

      expect(result.id).toBe("m-late");
      expect(result.attempts).toBeGreaterThanOrEqual(2);
      expect(received).toEqual(["/sms"]);
    } finally {
      late.closeAllConnections();
      late.close();
      if (late.listening) {
        await once(late, "close");
      }
    }
  });

  test("stops at SEND_MAX_ATTEMPTS", async () => {
    env.gateway.on("/sms", { status: 503 });
    const { delivery, integration } = await harness({ settings: { maxAttempts: 4 } });

    const error = await gatewayErrorOf(delivery.send(integration, message));

    expect(error.info).toMatchObject({ httpStatus: 503, attempts: 4 });
    expect(env.gateway.requestsTo("/sms")).toHaveLength(4);
  });

  test("stops retrying when the deadline leaves no time", async () => {
    env.gateway.on("/sms", { status: 503 });
    const { delivery, integration } = await harness({
      settings: { maxAttempts: 10, baseDelayMs: 200, maxDelayMs: 200 },
      random: () => 0.99,
    });

    const error = await gatewayErrorOf(delivery.send(integration, message, { deadlineMs: 700 }));

    expect(error.info.httpStatus).toBe(503);
    expect(error.info.attempts).toBeLessThan(10);
    expect(error.message).toContain("the deadline left no time for another");
    expect(env.gateway.requestsTo("/sms")).toHaveLength(error.info.attempts);
  });

  test("retries a failed token request before any SMS request", async () => {
    env.gateway.on("/auth", inOrder({ status: 503 }, { json: { data: { token: "tok-1" } } }));
    env.gateway.on("/sms", accepted("m-token"));
    const { delivery, integration } = await harness({
      integration: { baseUrl: env.gateway.url("/sms"), authenticateByToken: true, authUrl: env.gateway.url("/auth"), tokenKey: "token" },
    });

    const result = await delivery.send(integration, message);

    expect(result).toMatchObject({ id: "m-token", attempts: 1 });
    expect(env.gateway.requests.map((request) => request.url)).toEqual(["/auth", "/auth", "/sms"]);
  });

  /** Signals that end the wait before a retry: the caller's, and the end of the shutdown grace period. */
  const waitEnds = [
    {
      by: "the caller",
      abortable: () => {
        const controller = new AbortController();
        return { signal: controller.signal, abort: () => controller.abort() };
      },
      sentence: "The caller canceled the send after 1 attempt, so it was not retried.",
      absent: "shutting down",
    },
    {
      by: "the shutdown",
      abortable: () => {
        const lifecycle = new ServiceLifecycle();
        return { signal: lifecycle.forceSignal, abort: () => lifecycle.forceStop() };
      },
      sentence: "The service was shutting down, so the send was not retried after 1 attempt.",
      absent: "caller",
    },
  ];

  test.each(waitEnds)("stops when $by ends the wait", async ({ abortable, sentence, absent }) => {
    env.gateway.on("/sms", { status: 503 });
    const { signal, abort } = abortable();
    const { delivery, integration } = await harness({
      settings: { baseDelayMs: 2_000, maxDelayMs: 2_000 },
      random: () => 0.99,
      logger: pino({ level: "info" }, onRetryLog(abort)),
    });

    const error = await gatewayErrorOf(delivery.send(integration, message, { signal }));

    expect(error.info).toMatchObject({ httpStatus: 503, attempts: 1 });
    expect(error.message).toContain(sentence);
    expect(error.message).not.toContain(absent);
    expect(env.gateway.requestsTo("/sms")).toHaveLength(1);
  });

  // With a key, each attempt has a deadline of its own inside the send's, which must pass the reason on.
  test("names shutdown in a keyed attempt", async () => {
    const lifecycle = new ServiceLifecycle();
    env.gateway.on("/sms", () => {
      lifecycle.forceStop();
      return { hang: true };
    });
    const { delivery, integration } = await harness();

    const error = await gatewayErrorOf(delivery.send(integration, keyed, { signal: lifecycle.forceSignal }));

    expect(error.info).toMatchObject({ failure: "canceled", attempts: 1, outcomeUnknown: true });
    expect(error.message).toMatch(/^The service was shutting down and cut the SMS request of integration "acme" before/);
    expect(error.message).not.toContain("caller");
    expect(env.gateway.requestsTo("/sms")).toHaveLength(1);
  });
});
