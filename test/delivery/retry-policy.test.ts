import { describe, expect, test } from "vitest";

import { canonicalJson, requestHash } from "../../src/delivery/request-hash.js";
import {
  backoffCapMs,
  decideRetry,
  retrySafety,
  type RetrySafety,
  type RetrySettings,
  type RetryState,
} from "../../src/delivery/retry-policy.js";
import type { GatewayErrorInfo } from "../../src/errors.js";

const SETTINGS: RetrySettings = {
  maxAttempts: 3,
  attemptTimeoutMs: 5_000,
  baseDelayMs: 200,
  maxDelayMs: 1_000,
  retryAfterMaxMs: 5_000,
};
const STATE: RetryState = { attempts: 1, hasIdempotencyKey: false, remainingMs: 10_000 };

function info(overrides: Partial<GatewayErrorInfo>): GatewayErrorInfo {
  return {
    failure: "unavailable",
    stage: "send",
    httpStatus: 0,
    bodyExcerpt: "",
    bodyTruncated: false,
    attempts: 1,
    ...overrides,
  };
}

describe("retrySafety", () => {
  const cases: Array<[string, Partial<GatewayErrorInfo>, RetrySafety]> = [
    ["a refused connection", { failure: "unavailable" }, "safe"],
    ["a timeout before the write", { failure: "timeout" }, "safe"],
    ["a reset after the write", { failure: "unavailable", outcomeUnknown: true }, "needs_key"],
    ["a timeout after the write", { failure: "timeout", outcomeUnknown: true }, "needs_key"],
    ["HTTP 429", { failure: "rate_limited", httpStatus: 429 }, "safe"],
    ["HTTP 503", { httpStatus: 503 }, "safe"],
    ["HTTP 408", { httpStatus: 408 }, "safe"],
    ["HTTP 500", { httpStatus: 500 }, "needs_key"],
    ["HTTP 502", { httpStatus: 502 }, "needs_key"],
    ["HTTP 504", { httpStatus: 504 }, "needs_key"],
    ["HTTP 501", { httpStatus: 501 }, "never"],
    ["HTTP 400", { failure: "rejected", httpStatus: 400 }, "never"],
    ["HTTP 401", { failure: "credentials_refused", httpStatus: 401 }, "never"],
    ["a redirect", { failure: "redirected", httpStatus: 302 }, "never"],
    ["a cancel", { failure: "canceled", outcomeUnknown: true }, "never"],
    ["a failed token request", { stage: "auth", httpStatus: 500 }, "safe"],
    ["a rate-limited token request", { stage: "auth", failure: "rate_limited", httpStatus: 429 }, "safe"],
    ["a token request timeout", { stage: "auth", failure: "timeout" }, "safe"],
    ["a refused token request", { stage: "auth", failure: "credentials_refused", httpStatus: 403 }, "never"],
    ["a token reply without a token", { stage: "auth", failure: "invalid_auth_reply", httpStatus: 200 }, "never"],
  ];

  test.each(cases)("classifies %s", (_name, overrides, expected) => {
    expect(retrySafety(info(overrides))).toBe(expected);
  });
});

describe("decideRetry", () => {
  test("retries a safe failure after a jittered backoff", () => {
    expect(decideRetry(info({ httpStatus: 503 }), STATE, SETTINGS, () => 0.5)).toEqual({ retry: true, delayMs: 100 });
  });

  test("needs a key where the gateway may have acted", () => {
    const failure = info({ httpStatus: 500 });

    expect(decideRetry(failure, STATE, SETTINGS, () => 0)).toEqual({ retry: false, reason: "no_idempotency_key" });
    expect(decideRetry(failure, { ...STATE, hasIdempotencyKey: true }, SETTINGS, () => 0)).toEqual({ retry: true, delayMs: 0 });
  });

  test("stops at the attempt limit", () => {
    const decision = decideRetry(info({ httpStatus: 503 }), { ...STATE, attempts: 3 }, SETTINGS, () => 0);

    expect(decision).toEqual({ retry: false, reason: "attempt_limit" });
  });

  test("waits the Retry-After", () => {
    const decision = decideRetry(info({ httpStatus: 429, failure: "rate_limited", retryAfterSeconds: 2 }), STATE, SETTINGS, () => 0);

    expect(decision).toEqual({ retry: true, delayMs: 2_000 });
  });

  test("stops at a Retry-After above the cap", () => {
    const failure = info({ httpStatus: 503, retryAfterSeconds: 6 });

    expect(decideRetry(failure, STATE, SETTINGS, () => 0)).toEqual({ retry: false, reason: "retry_after_too_long" });
  });

  test("stops when the wait and an attempt pass the deadline", () => {
    const failure = info({ httpStatus: 503, retryAfterSeconds: 1 });

    expect(decideRetry(failure, { ...STATE, remainingMs: 1_050 }, SETTINGS, () => 0)).toEqual({ retry: false, reason: "deadline" });
    expect(decideRetry(failure, { ...STATE, remainingMs: 1_100 }, SETTINGS, () => 0)).toEqual({ retry: true, delayMs: 1_000 });
  });

  test("does not retry after the deadline passed", () => {
    expect(decideRetry(info({ httpStatus: 503 }), { ...STATE, remainingMs: 0 }, SETTINGS, () => 0)).toEqual({
      retry: false,
      reason: "deadline",
    });
  });
});

describe("backoffCapMs", () => {
  test.each([
    [1, 200],
    [2, 400],
    [3, 800],
    [4, 1_000],
    [40, 1_000],
  ])("after %d attempts is %d ms", (attempts, expected) => {
    expect(backoffCapMs(attempts, SETTINGS)).toBe(expected);
  });
});

describe("requestHash", () => {
  const message = { to: "+15551234567", content: "hi", passthrough: { body: { b: 1, a: { d: [1, 2], c: null } } } };

  test("ignores key order and the idempotency key", () => {
    const reordered = { ...message, idempotencyKey: "k", passthrough: { body: { a: { c: null, d: [1, 2] }, b: 1 } } };

    expect(requestHash("acme", reordered)).toBe(requestHash("acme", message));
  });

  test.each([
    ["the integration", () => requestHash("other", message)],
    ["an unset sender and an empty one", () => requestHash("acme", { ...message, sender: "" })],
    ["array order", () => requestHash("acme", { ...message, passthrough: { body: { b: 1, a: { d: [2, 1], c: null } } } })],
    ["a header", () => requestHash("acme", { ...message, passthrough: { ...message.passthrough, headers: { x: "1" } } })],
  ])("tells apart %s", (_name, other) => {
    expect(other()).not.toBe(requestHash("acme", message));
  });

  test("writes canonical JSON", () => {
    expect(canonicalJson({ b: [1, { z: "x", y: null }], a: true })).toBe('{"a":true,"b":[1,{"y":null,"z":"x"}]}');
  });
});
