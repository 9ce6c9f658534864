import { expect } from "vitest";

import type { Integration } from "../../src/domain/integration.js";
import { FlowLimitError, GatewayError, type GatewayFailure } from "../../src/errors.js";
import { SendGate, type SendGateOptions } from "../../src/flow/send-gate.js";
import { toConnectError } from "../../src/rpc/error-mapping.js";
import { captureLogger, makeIntegration } from "../dispatch/fixtures.js";

export const SEND_TIMEOUT_MS = 5_000;

/** Creates a gate on a clock that the test moves with `advance`. */
export function makeGate(overrides: Partial<SendGateOptions> = {}) {
  const clock = { nowMs: 0 };
  const { logger, lines } = captureLogger();
  const gate = new SendGate({
    defaults: { sendConcurrency: 64, sendRatePerSecond: 0 },
    circuit: { failureThreshold: 3, openMs: 1_000, halfOpenProbes: 1 },
    sendTimeoutMs: SEND_TIMEOUT_MS,
    logger,
    now: () => clock.nowMs,
    ...overrides,
  });
  return {
    gate,
    logLines: lines,
    advance(ms: number) {
      clock.nowMs += ms;
    },
  };
}

export function integration(id: string, overrides: Partial<Integration> = {}): Integration {
  return makeIntegration("http://127.0.0.1:9/sms", { id, ...overrides });
}

/** Creates a send that stays in flight until the test settles it. */
export function heldSend() {
  let settle!: (error?: Error) => void;
  const done = new Promise<string>((resolve, reject) => {
    settle = (error) => (error === undefined ? resolve("sent") : reject(error));
  });
  return { send: () => done, succeed: () => settle(), fail: (error: Error) => settle(error) };
}

export function gatewayFailure(failure: GatewayFailure, httpStatus: number, attempts = 1): GatewayError {
  return new GatewayError(`gateway ${failure}`, {
    failure,
    stage: "send",
    httpStatus,
    bodyExcerpt: "",
    bodyTruncated: false,
    attempts,
  });
}

/** Runs a send through the gate that must be rejected, and returns the rejection. */
export async function rejectionOf(gate: SendGate, target: Integration): Promise<FlowLimitError> {
  let called = false;
  const error = await gate
    .run(target, {}, async () => {
      called = true;
      return "sent";
    })
    .then(
      () => new Error("expected the gate to reject the send"),
      (reason: unknown) => reason,
    );
  expect(called).toBe(false);
  expect(error).toBeInstanceOf(FlowLimitError);
  return error as FlowLimitError;
}

export async function sendOk(gate: SendGate, target: Integration): Promise<void> {
  await expect(gate.run(target, {}, async () => "sent")).resolves.toBe("sent");
}

/** Returns the wait in the `retry-after` header of a rejection, in milliseconds, as a plain HTTP client reads it. */
export function retryAfterMsOf(rejection: FlowLimitError): number {
  return Number(toConnectError(rejection).metadata.get("retry-after")) * 1000;
}
