import { durationMs } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { describe, expect, test } from "vitest";

import { ErrorInfoSchema, RetryInfoSchema } from "../../gen/smsgateway/v1/errors_pb.js";
import { resolveSendLimits } from "../../src/flow/flow-limits.js";
import {
  circuitOpenError,
  concurrencyLimitError,
  formatDelay,
  rateLimitError,
} from "../../src/flow/flow-rejection.js";
import { toConnectError } from "../../src/rpc/error-mapping.js";

const DEFAULTS = { sendConcurrency: 64, sendRatePerSecond: 0 };

describe("flow rejection errors", () => {
  test("concurrency limit maps to RESOURCE_EXHAUSTED", () => {
    const limits = resolveSendLimits({ maxConcurrentSends: 2, maxSendsPerSecond: 0 }, DEFAULTS);

    const error = toConnectError(concurrencyLimitError("acme", limits, 250));

    expect(error.code).toBe(Code.ResourceExhausted);
    expect(error.rawMessage).toBe(
      'Integration "acme" already has 2 sends in flight, its limit (max_concurrent_sends), so this SMS was not sent. ' +
        "Retry after 250 ms, or raise max_concurrent_sends if the gateway can take more.",
    );
    const [info] = error.findDetails(ErrorInfoSchema);
    expect(info?.reason).toBe("CONCURRENCY_LIMIT");
    expect(info?.metadata).toEqual({ integration_id: "acme", limit: "2" });
    const [retry] = error.findDetails(RetryInfoSchema);
    expect(durationMs(retry!.retryDelay!)).toBe(250);
    expect(error.metadata.get("retry-after")).toBe("1");
  });

  test("concurrency message names the default it used", () => {
    const limits = resolveSendLimits({ maxConcurrentSends: 0, maxSendsPerSecond: 0 }, DEFAULTS);

    const error = concurrencyLimitError("acme", limits, 10);

    expect(error.message).toContain("already has 64 sends in flight");
    expect(error.message).toContain("the SEND_CONCURRENCY default, as max_concurrent_sends is 0");
  });

  test("rate limit maps to RESOURCE_EXHAUSTED", () => {
    const limits = resolveSendLimits({ maxConcurrentSends: 0, maxSendsPerSecond: 0.5 }, DEFAULTS);

    const error = toConnectError(rateLimitError("acme", limits, 1500));

    expect(error.code).toBe(Code.ResourceExhausted);
    expect(error.rawMessage).toBe(
      'Integration "acme" reached its limit of 0.5 sends per second (max_sends_per_second), so this SMS was not sent. ' +
        "Retry after 1.5 s.",
    );
    expect(error.findDetails(ErrorInfoSchema)[0]?.reason).toBe("RATE_LIMITED");
    expect(error.findDetails(ErrorInfoSchema)[0]?.metadata).toEqual({ integration_id: "acme", limit: "0.5" });
    expect(durationMs(error.findDetails(RetryInfoSchema)[0]!.retryDelay!)).toBe(1500);
    expect(error.metadata.get("retry-after")).toBe("2");
  });

  test("open circuit maps to UNAVAILABLE with the cool-down", () => {
    const error = toConnectError(circuitOpenError("acme", { state: "open", remainingMs: 12_345 }, 5, 100));

    expect(error.code).toBe(Code.Unavailable);
    expect(error.rawMessage).toContain('The circuit breaker of integration "acme" is open after 5 consecutive gateway failures');
    expect(error.rawMessage).toContain("Retry after 12.3 s, when a probe send is let through.");
    expect(error.findDetails(ErrorInfoSchema)[0]?.reason).toBe("CIRCUIT_OPEN");
    expect(error.findDetails(ErrorInfoSchema)[0]?.metadata).toEqual({
      integration_id: "acme",
      limit: "5",
      circuit_state: "open",
    });
    expect(durationMs(error.findDetails(RetryInfoSchema)[0]!.retryDelay!)).toBe(12_345);
    expect(error.metadata.get("retry-after")).toBe("13");
  });

  test("half-open circuit uses the probe delay", () => {
    const error = toConnectError(circuitOpenError("acme", { state: "half_open", probesInFlight: 1 }, 5, 80));

    expect(error.code).toBe(Code.Unavailable);
    expect(error.rawMessage).toContain("is half-open and its 1 probe send is in flight");
    expect(error.findDetails(ErrorInfoSchema)[0]?.metadata["circuit_state"]).toBe("half_open");
    expect(durationMs(error.findDetails(RetryInfoSchema)[0]!.retryDelay!)).toBe(80);
  });

  test.each([
    { delayMs: 1, text: "1 ms" },
    { delayMs: 999, text: "999 ms" },
    { delayMs: 1000, text: "1 s" },
    { delayMs: 1500, text: "1.5 s" },
    { delayMs: 30_000, text: "30 s" },
  ])("formatDelay($delayMs) is $text", ({ delayMs, text }) => {
    expect(formatDelay(delayMs)).toBe(text);
  });
});
