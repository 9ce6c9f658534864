import { describe, expect, test } from "vitest";

import { BatchPausedError } from "../../src/batch/batch-runner.js";
import { GatewayError, InvalidArgumentError, OutboundBlockedError, type GatewayFailure } from "../../src/errors.js";
import { classifySendOutcome, sentNoSmsRequest } from "../../src/flow/send-outcome.js";

function gatewayError(failure: GatewayFailure, httpStatus: number, attempts = 1, stage: "auth" | "send" = "send"): GatewayError {
  return new GatewayError("gateway failed", {
    failure,
    stage,
    httpStatus,
    bodyExcerpt: "",
    bodyTruncated: false,
    attempts,
  });
}

describe("classifySendOutcome", () => {
  test.each([
    { name: "5xx", error: gatewayError("unavailable", 503), outcome: "failure" },
    { name: "connection failure", error: gatewayError("unavailable", 0), outcome: "failure" },
    { name: "timeout with the full budget", error: gatewayError("timeout", 0), outcome: "failure" },
    { name: "400", error: gatewayError("rejected", 400), outcome: "success" },
    { name: "401", error: gatewayError("credentials_refused", 401), outcome: "success" },
    { name: "429", error: gatewayError("rate_limited", 429), outcome: "success" },
    { name: "3xx", error: gatewayError("redirected", 302), outcome: "success" },
    { name: "token reply without token", error: gatewayError("invalid_auth_reply", 200), outcome: "success" },
    { name: "caller canceled", error: gatewayError("canceled", 0), outcome: "ignored" },
    { name: "no request made", error: gatewayError("unavailable", 0, 0), outcome: "ignored" },
    { name: "deadline over before the request", error: gatewayError("timeout", 0, 0), outcome: "ignored" },
    { name: "invalid passthrough", error: InvalidArgumentError.field("passthrough.headers", "invalid"), outcome: "ignored" },
    { name: "bug", error: new TypeError("undefined is not a function"), outcome: "ignored" },
  ])("$name is $outcome", ({ error, outcome }) => {
    expect(classifySendOutcome(error, false)).toBe(outcome);
  });

  test("timeout under a shorter caller deadline is ignored", () => {
    expect(classifySendOutcome(gatewayError("timeout", 0), true)).toBe("ignored");
  });

  test("5xx under a shorter caller deadline still counts", () => {
    expect(classifySendOutcome(gatewayError("unavailable", 500), true)).toBe("failure");
  });
});

describe("sentNoSmsRequest", () => {
  test.each([
    { name: "paused batch message", error: new BatchPausedError(), expected: true },
    { name: "caller canceled before the request", error: gatewayError("canceled", 0, 0), expected: true },
    { name: "deadline over before the request", error: gatewayError("timeout", 0, 0), expected: true },
    { name: "auth_url host name not resolved", error: gatewayError("unavailable", 0, 0, "auth"), expected: true },
    { name: "caller canceled after the request", error: gatewayError("canceled", 0), expected: false },
    { name: "429", error: gatewayError("rate_limited", 429), expected: false },
    { name: "token request failed", error: gatewayError("unavailable", 0, 1, "auth"), expected: false },
    { name: "invalid passthrough", error: InvalidArgumentError.field("passthrough.headers", "invalid"), expected: false },
    { name: "SSRF guard block", error: new OutboundBlockedError("integration.base_url", "OUTBOUND_ADDRESS_BLOCKED", "blocked", {}), expected: false },
    { name: "bug", error: new TypeError("undefined is not a function"), expected: false },
  ])("$name is $expected", ({ error, expected }) => {
    expect(sentNoSmsRequest(error)).toBe(expected);
  });
});
