import { setTimeout as sleep } from "node:timers/promises";

import { describe, expect, test } from "vitest";

import { MAX_RESPONSE_RESERVE_MS, RESPONSE_RESERVE_MS_PER_MESSAGE, responseReserveMs, runBatch } from "../../src/batch/batch-runner.js";
import { pacingDecision } from "../../src/batch/flow-pacing.js";
import { FlowLimitError, GatewayError, MessageNotStartedError, NotFoundError, type FlowLimitInfo } from "../../src/errors.js";
import { SlotWaitAbortedError } from "../../src/flow/concurrency-slots.js";

function flowError(reason: FlowLimitInfo["reason"], metadata?: Record<string, string>): FlowLimitError {
  return new FlowLimitError(`rejected: ${reason}`, { reason, integrationId: "acme", limit: "1", retryDelayMs: 5, ...(metadata ? { metadata } : {}) });
}

/** Returns the error of a send whose last attempt got this status from the gateway. */
function gatewayError(httpStatus: number, retryAfterSeconds: number | undefined, options: { replayed?: boolean } = {}): GatewayError {
  const failure = httpStatus === 429 ? "rate_limited" : "unavailable";
  const info = { failure, stage: "send", httpStatus, bodyExcerpt: "", bodyTruncated: false, attempts: 3 } as const;
  return new GatewayError(`HTTP ${httpStatus}`, retryAfterSeconds === undefined ? info : { ...info, retryAfterSeconds }, options);
}

const noSignal = new AbortController().signal;
/** RETRY_AFTER_MAX_MS of the batches in these tests. */
const GATEWAY_WAIT_MAX_MS = 5_000;

describe("pacingDecision", () => {
  test.each([
    { name: "concurrency limit waits", error: flowError("CONCURRENCY_LIMIT"), expected: { kind: "wait", delayMs: 5 } },
    { name: "rate limit waits", error: flowError("RATE_LIMITED"), expected: { kind: "wait", delayMs: 5 } },
    { name: "half-open circuit waits", error: flowError("CIRCUIT_OPEN", { circuit_state: "half_open" }), expected: { kind: "wait", delayMs: 5 } },
    { name: "open circuit stops", error: flowError("CIRCUIT_OPEN", { circuit_state: "open" }), expected: { kind: "stop" } },
    { name: "deleted integration stops", error: new NotFoundError("integration", "acme"), expected: { kind: "stop" } },
    {
      name: "gateway failure is final",
      error: new GatewayError("down", { failure: "unavailable", stage: "send", httpStatus: 503, bodyExcerpt: "", bodyTruncated: false, attempts: 1 }),
      expected: { kind: "final" },
    },
    { name: "gateway 503 with Retry-After is final", error: gatewayError(503, 2), expected: { kind: "final" } },
    { name: "gateway 429 without Retry-After is final", error: gatewayError(429, undefined), expected: { kind: "final" } },
    { name: "gateway 429 pauses for its Retry-After", error: gatewayError(429, 2), expected: { kind: "pause", delayMs: 2_000 } },
    { name: "gateway 429 at the longest wait pauses", error: gatewayError(429, 5), expected: { kind: "pause", delayMs: 5_000 } },
    { name: "gateway 429 with a longer Retry-After halts", error: gatewayError(429, 6), expected: { kind: "halt", delayMs: 6_000 } },
    { name: "replayed gateway 429 pauses", error: gatewayError(429, 2, { replayed: true }), expected: { kind: "pause", delayMs: 2_000 } },
  ])("$name", ({ error, expected }) => {
    expect(pacingDecision(error, GATEWAY_WAIT_MAX_MS)).toEqual(expected);
  });
});

test("responseReserveMs keeps a tenth, at most 1 s", () => {
  expect(responseReserveMs(2_000, 1)).toBe(200);
  expect(responseReserveMs(60_000, 1)).toBe(MAX_RESPONSE_RESERVE_MS);
  expect(responseReserveMs(-5, 1)).toBe(0);
});

test("responseReserveMs grows with the messages", () => {
  expect(responseReserveMs(60_000, 10_000)).toBe(10_000 * RESPONSE_RESERVE_MS_PER_MESSAGE);
  expect(responseReserveMs(2_500, 10_000)).toBe(2_000);
  expect(responseReserveMs(1_000, 10_000)).toBe(1_000);
  expect(responseReserveMs(2_000, 100)).toBe(200);
});

describe("runBatch", () => {
  test("returns outcomes in index order", async () => {
    // Later messages finish first, so order cannot come from completion order.
    const outcomes = await runBatch(
      5,
      async (index) => {
        await sleep(10 * (5 - index));
        if (index === 2) {
          throw new Error("message 2 failed");
        }
        return index * 10;
      },
      { concurrency: 5, signal: noSignal, deadlineMs: undefined, gatewayWaitMaxMs: GATEWAY_WAIT_MAX_MS },
    );

    expect(outcomes.map((outcome) => (outcome.ok ? outcome.value : "failed"))).toEqual([0, 10, "failed", 30, 40]);
  });

  test("keeps at most `concurrency` sends in flight", async () => {
    let inFlight = 0;
    let maxInFlight = 0;
    await runBatch(
      20,
      async () => {
        inFlight += 1;
        maxInFlight = Math.max(maxInFlight, inFlight);
        await sleep(1);
        inFlight -= 1;
      },
      { concurrency: 3, signal: noSignal, deadlineMs: undefined, gatewayWaitMaxMs: GATEWAY_WAIT_MAX_MS },
    );

    expect(maxInFlight).toBe(3);
  });

  test("tries a paced message again", async () => {
    const attempts = [0, 0];
    const outcomes = await runBatch(
      2,
      async (index) => {
        attempts[index]! += 1;
        if (index === 1 && attempts[1]! < 3) {
          throw flowError("RATE_LIMITED");
        }
        return "sent";
      },
      { concurrency: 2, signal: noSignal, deadlineMs: 10_000, gatewayWaitMaxMs: GATEWAY_WAIT_MAX_MS },
    );

    expect(outcomes.every((outcome) => outcome.ok)).toBe(true);
    expect(attempts).toEqual([1, 3]);
  });

  test.each([
    { name: "an open circuit", stopError: flowError("CIRCUIT_OPEN", { circuit_state: "open" }) },
    { name: "a deleted integration", stopError: new NotFoundError("integration", "acme") },
  ])("$name fails every message not yet started", async ({ stopError }) => {
    const sent: number[] = [];
    const outcomes = await runBatch(
      4,
      async (index) => {
        sent.push(index);
        if (index === 1) {
          throw stopError;
        }
      },
      { concurrency: 1, signal: noSignal, deadlineMs: undefined, gatewayWaitMaxMs: GATEWAY_WAIT_MAX_MS },
    );

    expect(sent).toEqual([0, 1]);
    expect(outcomes.map((outcome) => (outcome.ok ? "ok" : outcome.error))).toEqual(["ok", stopError, stopError, stopError]);
  });

  /**
   * Runs a batch of 8 that starts at `concurrency`, in which the last of
   * the first `concurrency` messages sets the concurrency to `changedTo`.
   * Messages 0 to 2 wait until the test releases them. Returns how many
   * messages were in flight when each one started.
   */
  async function inFlightAfterChange(concurrency: number, changedTo: number): Promise<number[]> {
    const heldCount = 3;
    let inFlight = 0;
    const inFlightAtStart: number[] = [];
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    const running = runBatch(
      8,
      async (index, options) => {
        inFlight += 1;
        inFlightAtStart[index] = inFlight;
        if (index === concurrency - 1) {
          options.setConcurrency(changedTo);
        }
        await (index < heldCount ? released : sleep(1));
        inFlight -= 1;
      },
      { concurrency, signal: noSignal, deadlineMs: undefined, gatewayWaitMaxMs: GATEWAY_WAIT_MAX_MS },
    );
    await sleep(1);
    release();
    const outcomes = await running;

    expect(outcomes.every((outcome) => outcome.ok)).toBe(true);
    return inFlightAtStart;
  }

  test("a raised concurrency starts more messages at once", async () => {
    const inFlightAtStart = await inFlightAfterChange(1, 3);

    expect(inFlightAtStart.slice(0, 3)).toEqual([1, 2, 3]);
    expect(Math.max(...inFlightAtStart)).toBe(3);
  });

  test("a lowered concurrency starts one at a time", async () => {
    const inFlightAtStart = await inFlightAfterChange(3, 1);

    expect(inFlightAtStart.slice(0, 3)).toEqual([1, 2, 3]);
    expect(inFlightAtStart.slice(3)).toEqual([1, 1, 1, 1, 1]);
  });

  test("a canceled batch starts nothing", async () => {
    const controller = new AbortController();
    controller.abort();
    let sends = 0;

    const outcomes = await runBatch(3, async () => (sends += 1), { concurrency: 2, signal: controller.signal, deadlineMs: 5_000, gatewayWaitMaxMs: GATEWAY_WAIT_MAX_MS });

    expect(sends).toBe(0);
    for (const outcome of outcomes) {
      expect(outcome.ok).toBe(false);
      expect(outcome.ok ? undefined : (outcome.error as MessageNotStartedError).reason).toBe("canceled");
    }
  });

  test.each([
    { name: "shutdown, then the end of grace", first: "stopping", reason: "shutting_down" },
    { name: "a cancel, then shutdown", first: "signal", reason: "canceled" },
  ])("messages not started report the first abort: $name", async ({ first, reason }) => {
    const caller = new AbortController();
    const stopping = new AbortController();
    const [earlier, later] = first === "stopping" ? [stopping, caller] : [caller, stopping];
    const sent: number[] = [];

    const outcomes = await runBatch(
      3,
      async (index) => {
        sent.push(index);
        // Both signals abort while the first message is in flight.
        earlier.abort();
        later.abort();
        throw new Error("the send was cut short");
      },
      { concurrency: 1, signal: caller.signal, stopping: stopping.signal, deadlineMs: undefined, gatewayWaitMaxMs: GATEWAY_WAIT_MAX_MS },
    );

    expect(sent).toEqual([0]);
    expect(outcomes.slice(1).map((outcome) => (outcome.ok ? undefined : (outcome.error as MessageNotStartedError).reason))).toEqual([
      reason,
      reason,
    ]);
  });

  test("a spent deadline starts nothing", async () => {
    let sends = 0;

    const outcomes = await runBatch(2, async () => (sends += 1), { concurrency: 2, signal: noSignal, deadlineMs: 50, gatewayWaitMaxMs: GATEWAY_WAIT_MAX_MS });

    expect(sends).toBe(0);
    expect(outcomes.map((outcome) => (outcome.ok ? undefined : (outcome.error as MessageNotStartedError).reason))).toEqual([
      "deadline_exceeded",
      "deadline_exceeded",
    ]);
  });

  test("each send gets the time left before the reserve", async () => {
    const budgets: (number | undefined)[] = [];

    await runBatch(1, async (_index, options) => budgets.push(options.deadlineMs), { concurrency: 1, signal: noSignal, deadlineMs: 5_000, gatewayWaitMaxMs: GATEWAY_WAIT_MAX_MS });
    await runBatch(1, async (_index, options) => budgets.push(options.deadlineMs), { concurrency: 1, signal: noSignal, deadlineMs: undefined, gatewayWaitMaxMs: GATEWAY_WAIT_MAX_MS });

    expect(budgets[0]).toBeLessThanOrEqual(4_500);
    expect(budgets[0]).toBeGreaterThan(4_000);
    expect(budgets[1]).toBeUndefined();
  });
});

/** Waits like a send queued for a slot: until the signal aborts, then fails as the gate does. */
function waitForSlot(signal: AbortSignal): Promise<never> {
  return new Promise((_resolve, reject) => {
    signal.addEventListener("abort", () => reject(new SlotWaitAbortedError()), { once: true });
  });
}

describe("runBatch start window", () => {
  test.each([
    { name: "the caller cancels", closes: "signal", deadlineMs: undefined, reason: "canceled" },
    { name: "the service begins to shut down", closes: "stopping", deadlineMs: undefined, reason: "shutting_down" },
    { name: "the deadline nears", closes: "nothing", deadlineMs: 300, reason: "deadline_exceeded" },
  ])("a wait for a slot ends when $name", async ({ closes, deadlineMs, reason }) => {
    const caller = new AbortController();
    const stopping = new AbortController();
    const windows: AbortSignal[] = [];

    const outcomes = await runBatch(
      3,
      async (_index, options) => {
        windows.push(options.startSignal);
        const waiting = waitForSlot(options.startSignal);
        // Once both workers wait, the window closes as the case sets.
        if (windows.length === 2 && closes === "signal") {
          caller.abort();
        } else if (windows.length === 2 && closes === "stopping") {
          stopping.abort();
        }
        return waiting;
      },
      { concurrency: 2, signal: caller.signal, stopping: stopping.signal, deadlineMs, gatewayWaitMaxMs: GATEWAY_WAIT_MAX_MS },
    );

    expect(windows).toHaveLength(2);
    expect(outcomes.map((outcome) => (outcome.ok ? undefined : (outcome.error as MessageNotStartedError).reason))).toEqual([
      reason,
      reason,
      reason,
    ]);
  });
});

describe("runBatch after a gateway's 429", () => {
  /** Outcome of a message as `reason` of its MessageNotStartedError, "ok", or the error itself. */
  function outcomeOf(outcome: { ok: boolean; error?: unknown }): unknown {
    if (outcome.ok) {
      return "ok";
    }
    return outcome.error instanceof MessageNotStartedError ? outcome.error.reason : outcome.error;
  }

  test("pauses for a short Retry-After", async () => {
    const starts: number[] = [];
    const limited = gatewayError(429, 0.3);

    const outcomes = await runBatch(
      3,
      async (index) => {
        starts[index] = performance.now();
        if (index === 0) {
          throw limited;
        }
      },
      { concurrency: 1, signal: noSignal, deadlineMs: undefined, gatewayWaitMaxMs: GATEWAY_WAIT_MAX_MS },
    );

    expect(outcomes.map(outcomeOf)).toEqual([limited, "ok", "ok"]);
    // Timers may fire up to a millisecond early against performance.now().
    expect(starts[1]! - starts[0]!).toBeGreaterThanOrEqual(299);
  });

  test("halts after a long Retry-After", async () => {
    let sends = 0;
    const limited = gatewayError(429, 60);

    const outcomes = await runBatch(
      4,
      async () => {
        sends += 1;
        throw limited;
      },
      { concurrency: 1, signal: noSignal, deadlineMs: undefined, gatewayWaitMaxMs: GATEWAY_WAIT_MAX_MS },
    );

    expect(sends).toBe(1);
    expect(outcomes.map(outcomeOf)).toEqual([limited, "gateway_rate_limited", "gateway_rate_limited", "gateway_rate_limited"]);
    const notStarted = (outcomes[1] as { error: MessageNotStartedError }).error;
    expect(notStarted.message).toContain("asked to wait 60 s (Retry-After), longer than RETRY_AFTER_MAX_MS");
    expect(notStarted.retryDelayMs).toBeGreaterThan(59_000);
    expect(notStarted.retryDelayMs).toBeLessThanOrEqual(60_000);
  });

  test("fails messages the wait would delay past the deadline", async () => {
    const startedAt = performance.now();
    const limited = gatewayError(429, 3);

    const outcomes = await runBatch(
      3,
      async (index) => {
        if (index === 0) {
          throw limited;
        }
      },
      { concurrency: 1, signal: noSignal, deadlineMs: 1_000, gatewayWaitMaxMs: GATEWAY_WAIT_MAX_MS },
    );

    expect(outcomes.map(outcomeOf)).toEqual([limited, "gateway_rate_limited", "gateway_rate_limited"]);
    expect((outcomes[2] as { error: MessageNotStartedError }).error.message).toContain("the call's deadline comes first");
    expect(performance.now() - startedAt).toBeLessThan(1_000);
  });

  test("ends a wait for a slot when the batch halts", async () => {
    const limited = gatewayError(429, 60);

    const outcomes = await runBatch(
      3,
      async (index, options) => {
        if (index === 0) {
          return waitForSlot(options.startSignal);
        }
        throw limited;
      },
      { concurrency: 2, signal: noSignal, deadlineMs: undefined, gatewayWaitMaxMs: GATEWAY_WAIT_MAX_MS },
    );

    expect(outcomes.map(outcomeOf)).toEqual(["gateway_rate_limited", limited, "gateway_rate_limited"]);
  });
});
