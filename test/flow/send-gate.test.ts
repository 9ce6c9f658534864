import { describe, expect, test } from "vitest";

import { BatchPausedError } from "../../src/batch/batch-runner.js";
import type { Integration } from "../../src/domain/integration.js";
import { FlowLimitError, GatewayError, type FlowLimitReason } from "../../src/errors.js";
import { RETRY_AFTER_MARGIN_MS } from "../../src/flow/retry-delay.js";
import { IDLE_ENTRY_MS, SendGate } from "../../src/flow/send-gate.js";
import {
  gatewayFailure,
  heldSend,
  integration,
  makeGate,
  rejectionOf,
  retryAfterMsOf,
  SEND_TIMEOUT_MS,
  sendOk,
} from "./gate-fixtures.js";

async function sendFailing(gate: SendGate, target: Integration, error: Error, deadlineMs?: number): Promise<void> {
  await expect(gate.run(target, { deadlineMs }, () => Promise.reject(error))).rejects.toBe(error);
}

function reasonOf(error: FlowLimitError): FlowLimitReason {
  return error.info.reason;
}

describe("SendGate concurrency", () => {
  test("rejects the send past the limit", async () => {
    const { gate } = makeGate();
    const acme = integration("acme", { maxConcurrentSends: 2 });
    const held = [heldSend(), heldSend()];
    const running = held.map((h) => gate.run(acme, {}, h.send));

    const rejected = await rejectionOf(gate, acme);

    expect(reasonOf(rejected)).toBe("CONCURRENCY_LIMIT");
    expect(rejected.info.limit).toBe("2");
    expect(rejected.info.integrationId).toBe("acme");
    held[0]!.succeed();
    await running[0];
    await sendOk(gate, acme);
    held[1]!.succeed();
    await running[1];
  });

  test("uses SEND_CONCURRENCY when the field is 0", async () => {
    const { gate } = makeGate({ defaults: { sendConcurrency: 1, sendRatePerSecond: 0 } });
    const acme = integration("acme");
    const held = heldSend();
    const running = gate.run(acme, {}, held.send);

    const rejected = await rejectionOf(gate, acme);

    expect(rejected.info.limit).toBe("1");
    expect(rejected.message).toContain("SEND_CONCURRENCY");
    held.succeed();
    await running;
  });

  test("limits each integration on its own", async () => {
    const { gate } = makeGate();
    const held = heldSend();
    const running = gate.run(integration("acme", { maxConcurrentSends: 1 }), {}, held.send);

    await sendOk(gate, integration("other", { maxConcurrentSends: 1 }));

    held.succeed();
    await running;
  });

  test("a raised limit applies to the next send", async () => {
    const { gate } = makeGate();
    const held = heldSend();
    const running = gate.run(integration("acme", { maxConcurrentSends: 1 }), {}, held.send);
    await rejectionOf(gate, integration("acme", { maxConcurrentSends: 1 }));

    await sendOk(gate, integration("acme", { maxConcurrentSends: 2 }));

    held.succeed();
    await running;
  });

  test("retry delay follows the average send time", async () => {
    const { gate, advance } = makeGate();
    const acme = integration("acme", { maxConcurrentSends: 1 });
    const first = heldSend();
    const running = gate.run(acme, {}, first.send);
    expect((await rejectionOf(gate, acme)).info.retryDelayMs).toBe(100);
    advance(400);
    first.succeed();
    await running;

    expect((await rejectionOfWhileHeld(gate, acme)).info.retryDelayMs).toBe(400);
    expect((await rejectionOfWhileHeld(gate, acme)).info.retryDelayMs).toBe(320);
  });

  test("retry delay stays within its bounds", async () => {
    const { gate, advance } = makeGate();
    const acme = integration("acme", { maxConcurrentSends: 1 });
    await sendOk(gate, acme);
    expect((await rejectionOfWhileHeld(gate, acme)).info.retryDelayMs).toBe(10);

    const stuck = heldSend();
    const running = gate.run(integration("slow", { maxConcurrentSends: 1 }), {}, stuck.send);
    advance(10 * SEND_TIMEOUT_MS);
    stuck.succeed();
    await running;

    const rejected = await rejectionOfWhileHeld(gate, integration("slow", { maxConcurrentSends: 1 }));
    expect(rejected.info.retryDelayMs).toBe(SEND_TIMEOUT_MS);
  });

  test("a failed send frees its slot", async () => {
    const { gate } = makeGate();
    const acme = integration("acme", { maxConcurrentSends: 1 });

    await sendFailing(gate, acme, gatewayFailure("rejected", 400));

    await sendOk(gate, acme);
  });
});

/** Holds one send of `target` in flight, rejects the next one, then lets the first finish. */
async function rejectionOfWhileHeld(gate: SendGate, target: Integration): Promise<FlowLimitError> {
  const held = heldSend();
  const running = gate.run(target, {}, held.send);
  const rejected = await rejectionOf(gate, target);
  held.succeed();
  await running;
  return rejected;
}

const neverAborted = new AbortController().signal;

/** Sends through the gate as a message of a batch does, which may wait for a slot. */
function queuedSend(gate: SendGate, target: Integration): Promise<string> {
  return gate.run(target, { waitForSlot: neverAborted }, async () => "sent");
}

async function queuedOk(gate: SendGate, target: Integration): Promise<void> {
  await expect(queuedSend(gate, target)).resolves.toBe("sent");
}

/** Runs a queued send that flow control must reject, and returns the rejection. */
async function queuedRejection(gate: SendGate, target: Integration): Promise<FlowLimitError> {
  const error = await queuedSend(gate, target).then(
    () => new Error("expected the gate to reject the queued send"),
    (reason: unknown) => reason,
  );
  expect(error).toBeInstanceOf(FlowLimitError);
  return error as FlowLimitError;
}

describe("SendGate rate limit", () => {
  test("allows a burst, then rejects until a token is back", async () => {
    const { gate, advance } = makeGate();
    const acme = integration("acme", { maxSendsPerSecond: 2 });
    await sendOk(gate, acme);
    await sendOk(gate, acme);

    const rejected = await rejectionOf(gate, acme);

    expect(reasonOf(rejected)).toBe("RATE_LIMITED");
    expect(rejected.info.retryDelayMs).toBe(500);
    expect(rejected.info.limit).toBe("2");
    advance(200);
    expect((await rejectionOf(gate, acme)).info.retryDelayMs).toBe(300);
    advance(300);
    await sendOk(gate, acme);
  });

  test("uses SEND_RATE_PER_SECOND when the field is 0", async () => {
    const { gate } = makeGate({ defaults: { sendConcurrency: 64, sendRatePerSecond: 1 } });
    const acme = integration("acme");
    await sendOk(gate, acme);

    const rejected = await rejectionOf(gate, acme);

    expect(rejected.info.limit).toBe("1");
    expect(rejected.message).toContain("SEND_RATE_PER_SECOND");
  });

  test("no limit when both are 0", async () => {
    const { gate } = makeGate();
    const acme = integration("acme");

    for (let i = 0; i < 1_000; i++) {
      await sendOk(gate, acme);
    }
  });

  test("a changed rate applies to the next send", async () => {
    const { gate, advance } = makeGate();
    await sendOk(gate, integration("acme", { maxSendsPerSecond: 1 }));
    await rejectionOf(gate, integration("acme", { maxSendsPerSecond: 1 }));

    expect((await rejectionOf(gate, integration("acme", { maxSendsPerSecond: 100 }))).info.retryDelayMs).toBe(10);
    advance(10);
    await sendOk(gate, integration("acme", { maxSendsPerSecond: 100 }));
    await sendOk(gate, integration("acme", { maxSendsPerSecond: 0 }));
  });

  /**
   * Takes the only token of a one-per-second `target` with a queued send,
   * makes a second queued send wait for the next token, and then rejects a
   * direct send, which keeps the next token for direct sends.
   */
  async function keepNextToken(gate: SendGate, target: Integration): Promise<void> {
    await queuedOk(gate, target);
    expect((await queuedRejection(gate, target)).info.retryDelayMs).toBe(1_000);
    expect((await rejectionOf(gate, target)).info.retryDelayMs).toBe(1_000);
  }

  test("a rejected direct send gets the next token", async () => {
    const { gate, advance } = makeGate();
    const acme = integration("acme", { maxSendsPerSecond: 1 });
    await keepNextToken(gate, acme);

    advance(1_000);
    const queuedLater = await queuedRejection(gate, acme);

    expect(reasonOf(queuedLater)).toBe("RATE_LIMITED");
    expect(queuedLater.info.retryDelayMs).toBe(1_000);
    await sendOk(gate, acme);
  });

  test("an unused kept token goes to queued sends", async () => {
    const { gate, advance } = makeGate();
    const acme = integration("acme", { maxSendsPerSecond: 1 });
    await keepNextToken(gate, acme);

    advance(1_000);
    await queuedRejection(gate, acme);
    advance(1_000);

    await queuedOk(gate, acme);
  });

  test("the token after a kept one is not kept", async () => {
    const { gate, advance } = makeGate();
    const acme = integration("acme", { maxSendsPerSecond: 1 });
    await keepNextToken(gate, acme);
    advance(1_000);
    await queuedRejection(gate, acme);
    await sendOk(gate, acme);

    await rejectionOf(gate, acme);
    advance(1_000);

    await queuedOk(gate, acme);
  });

  test("no token is kept while no queued send waits", async () => {
    const { gate, advance } = makeGate();
    const acme = integration("acme", { maxSendsPerSecond: 1 });
    await sendOk(gate, acme);
    await rejectionOf(gate, acme);

    advance(1_000);

    await queuedOk(gate, acme);
  });

  test("queued sends take tokens beyond the kept one", async () => {
    // At 1000 sends per second, the 1 ms retry delay keeps the token for the 1 s of its retry-after header plus the margin.
    const { gate, advance } = makeGate();
    const acme = integration("acme", { maxSendsPerSecond: 1_000 });
    for (let i = 0; i < 1_000; i++) {
      await queuedOk(gate, acme);
    }
    await queuedRejection(gate, acme);
    expect((await rejectionOf(gate, acme)).info.retryDelayMs).toBe(1);

    advance(5);
    for (let i = 0; i < 4; i++) {
      await queuedOk(gate, acme);
    }

    expect((await queuedRejection(gate, acme)).info.retryDelayMs).toBe(1);
    await sendOk(gate, acme);
  });

  /**
   * Takes the burst of 4 of a four-per-second `target` with queued sends,
   * makes a fifth wait for a token, and then rejects a direct send, which
   * keeps the next token for it. Returns the wait in its `retry-after`
   * header, in milliseconds: 1 s, longer than its 250 ms retry delay.
   */
  async function keepTokenPastRetryDelay(gate: SendGate, target: Integration): Promise<number> {
    for (let i = 0; i < 4; i++) {
      await queuedOk(gate, target);
    }
    await queuedRejection(gate, target);
    const rejected = await rejectionOf(gate, target);
    expect(rejected.info.retryDelayMs).toBe(250);
    expect(retryAfterMsOf(rejected)).toBe(1_000);
    return retryAfterMsOf(rejected);
  }

  test("a kept token waits for a caller that honours retry-after", async () => {
    const { gate, advance } = makeGate();
    const acme = integration("acme", { maxSendsPerSecond: 4 });
    const retryAfterMs = await keepTokenPastRetryDelay(gate, acme);

    // The caller comes back just within the margin for its round trip; the bucket is full again.
    advance(retryAfterMs + RETRY_AFTER_MARGIN_MS - 1);
    for (let i = 0; i < 3; i++) {
      await queuedOk(gate, acme);
    }
    await queuedRejection(gate, acme);

    await sendOk(gate, acme);
  });

  test("a kept token no caller takes goes to queued sends after the margin", async () => {
    const { gate, advance } = makeGate();
    const acme = integration("acme", { maxSendsPerSecond: 4 });
    const retryAfterMs = await keepTokenPastRetryDelay(gate, acme);

    advance(retryAfterMs + RETRY_AFTER_MARGIN_MS);
    for (let i = 0; i < 4; i++) {
      await queuedOk(gate, acme);
    }

    expect(reasonOf(await rejectionOf(gate, acme))).toBe("RATE_LIMITED");
  });

  test("a concurrency rejection takes no token", async () => {
    const { gate } = makeGate();
    const acme = integration("acme", { maxConcurrentSends: 1, maxSendsPerSecond: 2 });
    const held = heldSend();
    const running = gate.run(acme, {}, held.send);

    expect(reasonOf(await rejectionOf(gate, acme))).toBe("CONCURRENCY_LIMIT");
    expect(reasonOf(await rejectionOf(gate, acme))).toBe("CONCURRENCY_LIMIT");
    held.succeed();
    await running;

    await sendOk(gate, acme);
  });

  test.each([
    { name: "a paused batch message", error: new BatchPausedError() },
    { name: "a send canceled before its request", error: gatewayFailure("canceled", 0, 0) },
  ])("$name gives its token back", async ({ error }) => {
    const { gate } = makeGate();
    const acme = integration("acme", { maxSendsPerSecond: 1 });

    await expect(gate.run(acme, { waitForSlot: neverAborted }, () => Promise.reject(error))).rejects.toBe(error);
    await sendFailing(gate, acme, error);

    await sendOk(gate, acme);
    expect(reasonOf(await rejectionOf(gate, acme))).toBe("RATE_LIMITED");
  });

  test("a send whose request failed keeps its token", async () => {
    const { gate } = makeGate();
    const acme = integration("acme", { maxSendsPerSecond: 1 });

    await sendFailing(gate, acme, gatewayFailure("canceled", 0));

    expect(reasonOf(await rejectionOf(gate, acme))).toBe("RATE_LIMITED");
  });

  test("a token given back never overfills the bucket", async () => {
    const { gate, advance } = makeGate();
    const acme = integration("acme", { maxSendsPerSecond: 2 });
    const held = heldSend();
    const running = gate.run(acme, {}, held.send);
    // The bucket is full again when the held send gives its token back.
    advance(500);
    held.fail(new BatchPausedError());
    await expect(running).rejects.toBeInstanceOf(BatchPausedError);

    await sendOk(gate, acme);
    await sendOk(gate, acme);
    expect(reasonOf(await rejectionOf(gate, acme))).toBe("RATE_LIMITED");
  });
});

describe("SendGate circuit breaker", () => {
  const acme = integration("acme");

  async function openCircuit(gate: SendGate): Promise<void> {
    for (let i = 0; i < 3; i++) {
      await sendFailing(gate, acme, gatewayFailure("unavailable", 503));
    }
  }

  test("opens after consecutive failures and rejects", async () => {
    const { gate, advance } = makeGate();
    await openCircuit(gate);
    advance(250);

    const rejected = await rejectionOf(gate, acme);

    expect(reasonOf(rejected)).toBe("CIRCUIT_OPEN");
    expect(rejected.info.retryDelayMs).toBe(750);
    expect(rejected.info.limit).toBe("3");
    expect(rejected.info.metadata).toEqual({ circuit_state: "open" });
  });

  test("replays neither close nor reset it", async () => {
    const { gate, advance } = makeGate();
    const replay = () => Promise.resolve({ replayed: true });
    await sendFailing(gate, acme, gatewayFailure("unavailable", 503));
    await sendFailing(gate, acme, gatewayFailure("unavailable", 503));
    await gate.run(acme, {}, replay);
    await sendFailing(gate, acme, gatewayFailure("unavailable", 503));

    expect(reasonOf(await rejectionOf(gate, acme))).toBe("CIRCUIT_OPEN");

    // Half-open: replays, of a success or a stored failure, leave the circuit half-open, so the next real send is the probe.
    advance(1_000);
    await gate.run(acme, {}, replay);
    const storedFailure = new GatewayError("rejected before", { failure: "rejected", stage: "send", httpStatus: 400, attempts: 1, bodyExcerpt: "", bodyTruncated: false }, { replayed: true });
    await sendFailing(gate, acme, storedFailure);
    await sendFailing(gate, acme, gatewayFailure("unavailable", 503));

    expect(reasonOf(await rejectionOf(gate, acme))).toBe("CIRCUIT_OPEN");
  });

  test("comes before the concurrency check", async () => {
    const { gate } = makeGate();
    const limited = integration("acme", { maxConcurrentSends: 1 });
    for (let i = 0; i < 2; i++) {
      await sendFailing(gate, limited, gatewayFailure("unavailable", 0));
    }
    const held = heldSend();
    const running = gate.run(limited, {}, held.send);
    held.fail(gatewayFailure("unavailable", 502));
    await expect(running).rejects.toBeInstanceOf(GatewayError);

    expect(reasonOf(await rejectionOf(gate, limited))).toBe("CIRCUIT_OPEN");
  });

  test("probes after the cool-down and closes on success", async () => {
    const { gate, advance, logLines } = makeGate();
    await openCircuit(gate);
    advance(1_000);
    const probe = heldSend();
    const probing = gate.run(acme, {}, probe.send);

    const whileProbing = await rejectionOf(gate, acme);
    probe.succeed();
    await probing;

    expect(reasonOf(whileProbing)).toBe("CIRCUIT_OPEN");
    expect(whileProbing.info.metadata).toEqual({ circuit_state: "half_open" });
    expect(gate.flowStates()).toEqual([
      { integrationId: "acme", circuit: "closed", consecutiveFailures: 0, circuitOpenRemainingMs: 0, inFlight: 0, waiting: 0 },
    ]);
    await sendOk(gate, acme);
    const messages = logLines.map((line) => (JSON.parse(line) as { msg: string }).msg);
    expect(messages).toEqual([
      "circuit opened, so sends fail fast with UNAVAILABLE until the cool-down ends",
      "probe send let through the half-open circuit",
      "circuit closed because a probe send succeeded",
    ]);
  });

  test("reopens when the probe fails", async () => {
    const { gate, advance } = makeGate();
    await openCircuit(gate);
    advance(1_000);

    await sendFailing(gate, acme, gatewayFailure("timeout", 0));

    const rejected = await rejectionOf(gate, acme);
    expect(rejected.info.retryDelayMs).toBe(1_000);
    expect(gate.flowStates()[0]).toMatchObject({ circuit: "open", circuitOpenRemainingMs: 1_000 });
  });

  test("4xx replies do not open it", async () => {
    const { gate } = makeGate();

    for (const [failure, status] of [["rejected", 400], ["credentials_refused", 401], ["rate_limited", 429]] as const) {
      for (let i = 0; i < 3; i++) {
        await sendFailing(gate, acme, gatewayFailure(failure, status));
      }
    }

    await sendOk(gate, acme);
    expect(gate.flowStates()[0]).toMatchObject({ circuit: "closed", consecutiveFailures: 0 });
  });

  test("timeouts under a short caller deadline do not count", async () => {
    const { gate } = makeGate();

    for (let i = 0; i < 5; i++) {
      await sendFailing(gate, acme, gatewayFailure("timeout", 0), SEND_TIMEOUT_MS - 1);
    }
    expect(gate.flowStates()[0]).toMatchObject({ circuit: "closed", consecutiveFailures: 0 });

    for (let i = 0; i < 3; i++) {
      await sendFailing(gate, acme, gatewayFailure("timeout", 0), SEND_TIMEOUT_MS);
    }
    expect(gate.flowStates()[0]).toMatchObject({ circuit: "open", consecutiveFailures: 3 });
  });

  test("circuits of other integrations stay closed", async () => {
    const { gate } = makeGate();
    await openCircuit(gate);

    await sendOk(gate, integration("other"));
  });
});

describe("SendGate state map", () => {
  test("forgets idle integrations", async () => {
    const { gate, advance } = makeGate();
    for (let i = 0; i < 1_000; i++) {
      await sendOk(gate, integration(`gw-${i}`, { maxSendsPerSecond: 5 }));
    }
    expect(gate.size).toBe(1_000);

    advance(IDLE_ENTRY_MS);
    await sendOk(gate, integration("trigger"));

    expect(gate.size).toBe(1);
    expect(gate.flowStates().map((state) => state.integrationId)).toEqual(["trigger"]);
  });

  test("keeps integrations with pending state", async () => {
    const { gate, advance } = makeGate({ circuit: { failureThreshold: 1, openMs: 2 * IDLE_ENTRY_MS, halfOpenProbes: 1 } });
    const held = heldSend();
    const inFlight = gate.run(integration("in-flight"), {}, held.send);
    await sendFailing(gate, integration("open-circuit"), gatewayFailure("unavailable", 503));
    await sendOk(gate, integration("slow-bucket", { maxSendsPerSecond: 0.01 }));
    await sendOk(gate, integration("idle"));

    advance(IDLE_ENTRY_MS);
    await sendOk(gate, integration("trigger"));

    const kept = gate.flowStates().map((state) => state.integrationId);
    expect(kept).toEqual(["in-flight", "open-circuit", "slow-bucket", "trigger"]);
    held.succeed();
    await inFlight;

    advance(2 * IDLE_ENTRY_MS);
    await sendOk(gate, integration("trigger-2"));
    expect(gate.flowStates().map((state) => state.integrationId)).toEqual(["trigger-2"]);
  });

  test("sweeps at most once per interval", async () => {
    const { gate, advance } = makeGate();
    await sendOk(gate, integration("first"));
    advance(IDLE_ENTRY_MS);
    await sendOk(gate, integration("second"));
    expect(gate.size).toBe(1);

    advance(IDLE_ENTRY_MS);
    await sendOk(gate, integration("third"));
    await sendOk(gate, integration("fourth"));

    expect(gate.size).toBe(2);
  });
});
