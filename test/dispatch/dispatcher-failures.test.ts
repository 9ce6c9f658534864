import { once } from "node:events";
import { createServer, type AddressInfo } from "node:net";
import { afterAll, afterEach, beforeEach, describe, expect, test } from "vitest";

import type { SmsMessage } from "../../src/dispatch/dispatcher.js";
import { transportError } from "../../src/dispatch/gateway-errors.js";
import { secretForms } from "../../src/dispatch/redact.js";
import type { GatewayFailure } from "../../src/errors.js";
import { ServiceLifecycle } from "../../src/server/service-lifecycle.js";
import { closedLoopbackUrl, ScriptedGateway } from "../helpers/scripted-gateway.js";
import { API_KEY, gatewayErrorOf, makeDispatcher, makeIntegration, SECRET_KEY } from "./fixtures.js";

const TIMEOUT_MS = 300;
/** Slack over a timeout for timers and a loaded test machine. */
const TIMER_SLACK_MS = 1_000;

const dispatcher = makeDispatcher({ timeoutMs: TIMEOUT_MS });
let gateway: ScriptedGateway;

beforeEach(async () => {
  gateway = await ScriptedGateway.start();
});
afterEach(() => gateway.close());
afterAll(() => dispatcher.close());

const message: SmsMessage = { to: "+15551234567", content: "hi" };
const withSecrets = () => makeIntegration(gateway.url(), { secretKeyHeader: "X-SECRET-KEY", secretKey: SECRET_KEY });

describe("Dispatcher.send status failures", () => {
  const cases: Array<[number, GatewayFailure, string]> = [
    [400, "rejected", "rejected the SMS request"],
    [404, "rejected", "rejected the SMS request"],
    [422, "rejected", "rejected the SMS request"],
    [401, "credentials_refused", "refused the credentials"],
    [403, "credentials_refused", "refused the credentials"],
    [429, "rate_limited", "rate-limited the SMS request"],
    [408, "unavailable", "failed the SMS request"],
    [500, "unavailable", "failed the SMS request"],
    [502, "unavailable", "failed the SMS request"],
    [503, "unavailable", "failed the SMS request"],
  ];

  test.each(cases)("maps HTTP %d to %s", async (status, failure, wording) => {
    const body = `{"error":"code ${status}","detail":"see docs"}`;
    gateway.on("/sms", { status, body, headers: { "content-type": "application/json" } });

    const error = await gatewayErrorOf(dispatcher.send(makeIntegration(gateway.url()), message));

    expect(error.info).toEqual({
      failure,
      stage: "send",
      httpStatus: status,
      bodyExcerpt: body,
      bodyTruncated: false,
      attempts: 1,
    });
    expect(error.message).toContain(wording);
    expect(error.message).toContain(`HTTP ${status}`);
    expect(error.message).toContain('integration "acme"');
  });

  test.each([
    [404, "Check the path of base_url."],
    [405, "Check the path of base_url."],
    [400, "Check the request fields against the gateway's reply body."],
  ])("HTTP %d names what to check", async (status, advice) => {
    gateway.on("/sms", { status, json: { error: "no" } });

    const error = await gatewayErrorOf(dispatcher.send(makeIntegration(gateway.url()), message));

    expect(error.message).toContain(advice);
  });

  test("bounds the excerpt to 1 KiB", async () => {
    gateway.on("/sms", { status: 500, body: "e".repeat(10_000) });

    const error = await gatewayErrorOf(dispatcher.send(makeIntegration(gateway.url()), message));

    expect(error.info.bodyExcerpt).toBe("e".repeat(1024));
    expect(error.info.bodyTruncated).toBe(true);
  });

  const echoes: Array<[string, string]> = [
    ["the api key", `{"error":"invalid key ${API_KEY}"}`],
    ["the secret key", `{"error":"invalid secret ${SECRET_KEY}"}`],
    ["both keys in headers dump", `X-API-KEY: ${API_KEY}\nX-SECRET-KEY: ${SECRET_KEY}`],
    ["the api key across the 1 KiB cut", `${"p".repeat(1020)}${API_KEY} and more text after it`],
    ["the api key in a long body", `${"p".repeat(200)}${API_KEY}${"q".repeat(3000)}`],
  ];

  test.each(echoes)("redacts %s", async (_name, body) => {
    gateway.on("/sms", { status: 401, body });

    const error = await gatewayErrorOf(dispatcher.send(withSecrets(), message));

    expect(error.info.bodyExcerpt).toContain("[REDACTED]");
    for (const secret of [API_KEY, SECRET_KEY]) {
      expect(error.info.bodyExcerpt).not.toContain(secret);
      expect(error.info.bodyExcerpt).not.toContain(secret.slice(0, 4));
      expect(error.message).not.toContain(secret);
    }
  });

  const retryCases: Array<[string, Record<string, string>, number | undefined, string]> = [
    ["delay seconds", { "retry-after": "30" }, 30, "Retry after 30 seconds."],
    ["one second", { "retry-after": "1" }, 1, "Retry after 1 second."],
    ["an HTTP date", { "retry-after": new Date(Date.now() + 120_000).toUTCString() }, 120, "Retry after"],
    ["no header", {}, undefined, "Retry later."],
  ];

  test.each(retryCases)("reads Retry-After as %s", async (_name, headers, seconds, wording) => {
    gateway.on("/sms", { status: 429, json: { error: "slow down" }, headers });

    const error = await gatewayErrorOf(dispatcher.send(makeIntegration(gateway.url()), message));

    expect(error.info.failure).toBe("rate_limited");
    if (seconds === undefined) {
      expect(error.info.retryAfterSeconds).toBeUndefined();
    } else {
      // An HTTP date has whole seconds, so the delay may come out 1 second short.
      expect(error.info.retryAfterSeconds).toBeGreaterThanOrEqual(seconds - 1);
      expect(error.info.retryAfterSeconds).toBeLessThanOrEqual(seconds);
    }
    expect(error.message).toContain(wording);
  });

  test.each([
    [503, { "retry-after": "2" }, "Retry after 2 seconds, and check the gateway's status"],
    [503, { "retry-after": "1" }, "Retry after 1 second, and check the gateway's status"],
    [503, {}, "Retry later, and check the gateway's status"],
    // Retry-After is read only on 429 and 503, so a 500 ignores it.
    [500, { "retry-after": "2" }, "Retry later, and check the gateway's status"],
  ])("HTTP %d with %j states the wait", async (status, headers, wording) => {
    gateway.on("/sms", { status, json: { error: "down" }, headers });

    const error = await gatewayErrorOf(dispatcher.send(makeIntegration(gateway.url()), message));

    expect(error.message).toContain(wording);
  });

  test.each([
    ["the key", "48213977"],
    ["the key with leading zeros", "0048213977"],
  ])("ignores a Retry-After that echoes %s", async (_name, retryAfter) => {
    gateway.on("/sms", { status: 429, json: { error: "slow down" }, headers: { "retry-after": retryAfter } });

    const integration = makeIntegration(gateway.url(), { apiKey: "48213977" });
    const error = await gatewayErrorOf(dispatcher.send(integration, message));

    expect(error.info.retryAfterSeconds).toBeUndefined();
    expect(error.message).toContain("Retry later.");
    expect(error.message).not.toContain("48213977");
  });
});

describe("Dispatcher.send redirects", () => {
  let target: ScriptedGateway;

  beforeEach(async () => {
    target = await ScriptedGateway.start();
    target.on("/sms", { json: { data: { id: "stolen" } } });
  });
  afterEach(() => target.close());

  test.each([301, 302, 303, 307, 308])("does not follow HTTP %d", async (status) => {
    gateway.on("/sms", { status, headers: { location: target.url() }, body: "moved" });

    const error = await gatewayErrorOf(dispatcher.send(makeIntegration(gateway.url()), message));

    expect(error.info.failure).toBe("redirected");
    expect(error.info.httpStatus).toBe(status);
    expect(error.info.bodyExcerpt).toBe("moved");
    expect(error.message).toContain(`HTTP ${status}`);
    expect(error.message).toContain(target.url());
    expect(error.message).toContain("Set base_url to the final URL.");
    expect(target.requests).toHaveLength(0);
  });

  test("redacts the api key in Location", async () => {
    gateway.on("/sms", { status: 302, headers: { location: `${target.url()}?key=${API_KEY}` } });

    const error = await gatewayErrorOf(dispatcher.send(makeIntegration(gateway.url()), message));

    expect(error.message).toContain("?key=[REDACTED]");
    expect(error.message).not.toContain(API_KEY);
  });

  test("names a missing Location", async () => {
    gateway.on("/sms", { status: 302 });

    const error = await gatewayErrorOf(dispatcher.send(makeIntegration(gateway.url()), message));

    expect(error.message).toContain("without a Location header");
  });
});

describe("Dispatcher.send connection failures", () => {
  test("maps connection refused to unavailable", async () => {
    const url = await closedLoopbackUrl();

    const error = await gatewayErrorOf(dispatcher.send(makeIntegration(url), message));

    expect(error.info).toMatchObject({ failure: "unavailable", stage: "send", httpStatus: 0, attempts: 1 });
    expect(error.message).toContain("ECONNREFUSED");
    expect(error.message).toContain(new URL(url).origin);
  });

  test("keeps its own words for a short key", async () => {
    const url = await closedLoopbackUrl();

    const error = await gatewayErrorOf(dispatcher.send(makeIntegration(url, { apiKey: "k" }), message));

    expect(error.message).toContain("Check base_url and that the gateway is running.");
    expect(error.message).not.toContain("[REDACTED]");
  });

  test("redacts a key in the host name", () => {
    const context = {
      integrationId: "host-key",
      stage: "send" as const,
      url: `http://${API_KEY}.gateway.example:9/sms`,
      secretForms: secretForms([API_KEY]),
      usesToken: false,
    };
    const connectionError = Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED" });
    const outcome = { ended: undefined, budgetMs: 1000, httpStatus: 0, attempts: 1, requestWritten: false };

    const error = transportError(context, connectionError, outcome);

    expect(error.message).toContain("to http://[REDACTED].gateway.example:9 failed");
  });

  test("maps a reply that breaks HTTP to unavailable", async () => {
    // The Content-Length echoes the API key, which undici rejects without an error code.
    const server = createServer((socket) => {
      socket.once("data", () => socket.end(`HTTP/1.1 200 OK\r\nContent-Length: ${API_KEY}\r\n\r\n{}`));
    });
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/sms`;

    try {
      const error = await gatewayErrorOf(dispatcher.send(makeIntegration(url), message));

      expect(error.info).toMatchObject({ failure: "unavailable", stage: "send", httpStatus: 0, outcomeUnknown: true });
      expect(error.message).toContain("an invalid HTTP reply (HTTPParserError)");
      expect(error.message).not.toContain(API_KEY);
    } finally {
      server.close();
    }
  });

  test("maps a reset connection to unavailable", async () => {
    gateway.on("/sms", { reset: true });

    const error = await gatewayErrorOf(dispatcher.send(makeIntegration(gateway.url()), message));

    expect(error.info.failure).toBe("unavailable");
    expect(error.info.httpStatus).toBe(0);
  });

  test("times out a gateway that never replies", async () => {
    gateway.on("/sms", { hang: true });
    const startedAt = performance.now();

    const error = await gatewayErrorOf(dispatcher.send(makeIntegration(gateway.url()), message));

    const elapsedMs = performance.now() - startedAt;
    expect(error.info).toMatchObject({ failure: "timeout", stage: "send", httpStatus: 0, attempts: 1 });
    expect(error.message).toContain(`within ${TIMEOUT_MS} ms`);
    expect(elapsedMs).toBeGreaterThanOrEqual(TIMEOUT_MS - 5);
    expect(elapsedMs).toBeLessThan(TIMEOUT_MS + TIMER_SLACK_MS);
  });

  test("lets a slow reply use the whole deadline", async () => {
    // undici's header and body timers tick about every half second, so sends that start at
    // different moments of a tick would see a timer set to the deadline fire up to a tick early.
    const slowDispatcher = makeDispatcher({ timeoutMs: 10_000, maxConnectionsPerOrigin: 8 });
    gateway.on("/sms", async () => {
      await new Promise((resolve) => setTimeout(resolve, 850));
      return { json: { data: { id: "slow" } } };
    });

    try {
      const sends = [0, 100, 200, 300, 400].map(async (delayMs) => {
        await new Promise((resolve) => setTimeout(resolve, delayMs));
        return slowDispatcher.send(makeIntegration(gateway.url()), message, { deadlineMs: 998 });
      });
      const results = await Promise.allSettled(sends);

      expect(results.map((result) => (result.status === "rejected" ? String(result.reason) : "sent"))).toEqual(Array(5).fill("sent"));
    } finally {
      await slowDispatcher.close();
    }
  });

  const brokenErrorBodies: Array<[string, { hangBody?: boolean; resetBody?: boolean }]> = [
    ["hangs", { hangBody: true }],
    ["resets", { resetBody: true }],
  ];

  test.each(brokenErrorBodies)("keeps the status and the arrived body when an error body %s", async (_name, reply) => {
    gateway.on("/sms", { status: 503, body: '{"error":', ...reply });

    const error = await gatewayErrorOf(dispatcher.send(makeIntegration(gateway.url()), message));

    expect(error.info).toMatchObject({
      failure: "unavailable",
      httpStatus: 503,
      bodyExcerpt: '{"error":',
      bodyTruncated: true,
    });
  });

  test.each(brokenErrorBodies)("drops a secret cut off when an error body %s", async (_name, reply) => {
    gateway.on("/sms", { status: 401, body: `{"error":"bad key ${API_KEY.slice(0, 6)}`, ...reply });

    const error = await gatewayErrorOf(dispatcher.send(makeIntegration(gateway.url()), message));

    expect(error.info.bodyExcerpt).toBe('{"error":"bad key ');
    expect(error.info.bodyTruncated).toBe(true);
  });

  test("shortens the timeout to the caller's deadline", async () => {
    const slowDispatcher = makeDispatcher({ timeoutMs: 10_000, maxConnectionsPerOrigin: 8 });
    gateway.on("/sms", { hang: true });
    const startedAt = performance.now();

    const error = await gatewayErrorOf(
      slowDispatcher.send(makeIntegration(gateway.url()), message, { deadlineMs: 150 }),
    );

    expect(error.info.failure).toBe("timeout");
    expect(error.message).toContain("within 150 ms");
    expect(performance.now() - startedAt).toBeLessThan(150 + TIMER_SLACK_MS);
    await slowDispatcher.close();
  });

  test("times out at once for a spent deadline", async () => {
    gateway.on("/sms", { json: { data: { id: "m1" } } });

    const error = await gatewayErrorOf(dispatcher.send(makeIntegration(gateway.url()), message, { deadlineMs: 0 }));

    expect(error.info).toMatchObject({ failure: "timeout", httpStatus: 0, attempts: 0 });
    expect(error.message).toMatch(/^The caller's deadline left no time for .*, so nothing was sent\. Allow a longer deadline\.$/);
    expect(gateway.requests).toHaveLength(0);
  });

  test("cancels when the caller aborts", async () => {
    gateway.on("/sms", { hang: true });
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 50);
    const startedAt = performance.now();

    const error = await gatewayErrorOf(
      dispatcher.send(makeIntegration(gateway.url()), message, { signal: controller.signal }),
    );

    expect(error.info).toMatchObject({ failure: "canceled", stage: "send", httpStatus: 0, attempts: 1 });
    expect(error.message).toMatch(/^The caller canceled the SMS request /);
    expect(performance.now() - startedAt).toBeLessThan(TIMEOUT_MS);
    expect(gateway.requests).toHaveLength(1);
  });

  test("cancels naming the shutdown", async () => {
    const lifecycle = new ServiceLifecycle();
    gateway.on("/sms", () => {
      lifecycle.forceStop();
      return { hang: true };
    });

    const error = await gatewayErrorOf(
      dispatcher.send(makeIntegration(gateway.url()), message, { signal: lifecycle.forceSignal }),
    );

    expect(error.info).toMatchObject({ failure: "canceled", stage: "send", httpStatus: 0, attempts: 1, outcomeUnknown: true });
    expect(error.message).toMatch(/^The service was shutting down and cut the SMS request of integration "acme" before/);
    expect(error.message).toContain("Before sending it again, check with the gateway.");
    expect(error.message).not.toContain("idempotency_key");
    expect(error.message).not.toContain("caller");
  });

  test("cancels at once for an aborted signal", async () => {
    gateway.on("/sms", { json: { data: { id: "m1" } } });

    const error = await gatewayErrorOf(
      dispatcher.send(makeIntegration(gateway.url()), message, { signal: AbortSignal.abort() }),
    );

    expect(error.info).toMatchObject({ failure: "canceled", attempts: 0 });
    expect(gateway.requests).toHaveLength(0);
  });
});
