import { afterEach, describe, expect, test, vi } from "vitest";

import type { Integration } from "../../src/domain/integration.js";
import { FlowLimitError, GatewayError, NotFoundError } from "../../src/errors.js";
import { SlotWaitAbortedError } from "../../src/flow/concurrency-slots.js";
import { RETRY_AFTER_MARGIN_MS } from "../../src/flow/retry-delay.js";
import { IDLE_ENTRY_MS, type SendGate } from "../../src/flow/send-gate.js";
import {
  gatewayFailure,
  heldSend,
  integration,
  makeGate,
  rejectionOf,
  retryAfterMsOf,
  sendOk,
} from "./gate-fixtures.js";

const neverAborted = new AbortController().signal;

/** Starts a send through the gate that may wait for a slot and stays in flight until the test settles it. */
function waitingSend(gate: SendGate, target: Integration, signal = neverAborted, deadlineMs?: number) {
  const held = heldSend();
  const state = { started: false, deadlineMs: undefined as number | undefined };
  const running = gate.run(target, { waitForSlot: signal, deadlineMs }, (sendDeadlineMs) => {
    state.started = true;
    state.deadlineMs = sendDeadlineMs;
    return held.send();
  });
  return { ...held, state, running };
}

/** Starts a direct send through the gate that stays in flight until the test settles it. */
function directSend(gate: SendGate, target: Integration) {
  const held = heldSend();
  return { ...held, running: gate.run(target, {}, held.send) };
}

/** Lets pending promise callbacks run, so that a send handed a slot reaches its send function. */
async function settle(): Promise<void> {
  for (let i = 0; i < 10; i++) {
    await Promise.resolve();
  }
}

/** Lets a held send succeed and end, and then lets a send handed its slot start. */
async function finish(send: { succeed(): void; running: Promise<unknown> }): Promise<void> {
  send.succeed();
  await send.running;
  await settle();
}

function waitingOf(gate: SendGate, integrationId: string): number | undefined {
  return gate.flowStates().find((state) => state.integrationId === integrationId)?.waiting;
}

function inFlightOf(gate: SendGate, integrationId: string): number | undefined {
  return gate.flowStates().find((state) => state.integrationId === integrationId)?.inFlight;
}

describe("SendGate slot waiting", () => {
  test("hands freed slots over in FIFO order", async () => {
    const { gate } = makeGate();
    const acme = integration("acme", { maxConcurrentSends: 1 });
    const first = waitingSend(gate, acme);
    const queued = [waitingSend(gate, acme), waitingSend(gate, acme), waitingSend(gate, acme)];
    await settle();

    expect(first.state.started).toBe(true);
    expect(waitingOf(gate, "acme")).toBe(3);
    expect(inFlightOf(gate, "acme")).toBe(1);

    first.succeed();
    await first.running;
    await settle();
    expect(queued.map((send) => send.state.started)).toEqual([true, false, false]);

    queued[0]!.succeed();
    await queued[0]!.running;
    await settle();
    expect(queued.map((send) => send.state.started)).toEqual([true, true, false]);

    queued[1]!.succeed();
    queued[2]!.succeed();
    await Promise.all(queued.map((send) => send.running));
    expect(gate.flowStates()[0]).toMatchObject({ inFlight: 0, waiting: 0 });
  });

  test("freed slot skips later arrivals", async () => {
    const { gate } = makeGate();
    const acme = integration("acme", { maxConcurrentSends: 1 });
    const first = waitingSend(gate, acme);
    const second = waitingSend(gate, acme);
    first.succeed();
    await first.running;

    const third = waitingSend(gate, acme);
    await settle();

    expect(second.state.started).toBe(true);
    expect(third.state.started).toBe(false);
    second.succeed();
    third.succeed();
    await Promise.all([second.running, third.running]);
  });

  test("direct send rejected while sends wait", async () => {
    const { gate } = makeGate();
    const acme = integration("acme", { maxConcurrentSends: 1 });
    const first = waitingSend(gate, acme);
    const queued = waitingSend(gate, acme);

    const rejected = await rejectionOf(gate, acme);

    expect(rejected.info.reason).toBe("CONCURRENCY_LIMIT");
    expect(rejected.info.retryDelayMs).toBeGreaterThan(0);
    first.succeed();
    queued.succeed();
    await Promise.all([first.running, queued.running]);
  });

  test("the deadline shrinks by the time waited", async () => {
    const { gate, advance } = makeGate();
    const acme = integration("acme", { maxConcurrentSends: 1 });
    const first = waitingSend(gate, acme, neverAborted, 1_000);
    const queued = waitingSend(gate, acme, neverAborted, 1_000);

    advance(300);
    first.succeed();
    await first.running;
    await settle();

    expect(first.state.deadlineMs).toBe(1_000);
    expect(queued.state.deadlineMs).toBe(700);
    queued.succeed();
    await queued.running;
  });

  test("raised limit admits waiters", async () => {
    const { gate } = makeGate();
    const first = waitingSend(gate, integration("acme", { maxConcurrentSends: 1 }));
    const queued = waitingSend(gate, integration("acme", { maxConcurrentSends: 1 }));

    // A limit of 3 leaves queued sends 2 slots, one for the waiter and none for the send that raises it.
    const raising = waitingSend(gate, integration("acme", { maxConcurrentSends: 3 }));
    await settle();

    expect(queued.state.started).toBe(true);
    expect(raising.state.started).toBe(false);
    for (const send of [first, queued, raising]) {
      send.succeed();
      await send.running;
    }
  });
});

describe("SendGate slot left for a direct send", () => {
  test("queued sends leave the last slot free", async () => {
    const { gate } = makeGate();
    const acme = integration("acme", { maxConcurrentSends: 3 });
    const queued = [waitingSend(gate, acme), waitingSend(gate, acme), waitingSend(gate, acme)];
    await settle();

    expect(queued.map((send) => send.state.started)).toEqual([true, true, false]);
    await sendOk(gate, acme);
    await sendOk(gate, acme);
    for (const send of queued) {
      await finish(send);
    }
  });

  test("last free slot stays free", async () => {
    const { gate } = makeGate();
    const acme = integration("acme", { maxConcurrentSends: 3 });
    const holders = [waitingSend(gate, acme), waitingSend(gate, acme)];
    const direct = directSend(gate, acme);
    const queued = waitingSend(gate, acme);

    await finish(holders[0]!);

    expect(queued.state.started).toBe(false);
    expect(gate.flowStates()[0]).toMatchObject({ inFlight: 2, waiting: 1 });
    await sendOk(gate, acme);
    await finish(direct);
    expect(queued.state.started).toBe(true);
    await finish(holders[1]!);
    await finish(queued);
  });

  test("direct sends in flight count too", async () => {
    const { gate } = makeGate();
    const acme = integration("acme", { maxConcurrentSends: 2 });
    const direct = directSend(gate, acme);

    const queued = waitingSend(gate, acme);
    await settle();

    expect(queued.state.started).toBe(false);
    await sendOk(gate, acme);
    await finish(direct);
    expect(queued.state.started).toBe(true);
    await finish(queued);
  });

  test("limit of 1 admits queued sends", async () => {
    const { gate } = makeGate();
    const acme = integration("acme", { maxConcurrentSends: 1 });

    const queued = waitingSend(gate, acme);
    await settle();

    expect(queued.state.started).toBe(true);
    expect((await rejectionOf(gate, acme)).info.reason).toBe("CONCURRENCY_LIMIT");
    await finish(queued);
  });

  test("rejection above limit 1 keeps nothing", async () => {
    const { gate } = makeGate();
    const acme = integration("acme", { maxConcurrentSends: 2 });
    const holder = waitingSend(gate, acme);
    const direct = directSend(gate, acme);
    const queued = waitingSend(gate, acme);
    await rejectionOf(gate, acme);

    // A kept slot would stay kept for the 1 s of the retry-after header plus the margin, far longer than this test.
    await finish(holder);
    await finish(direct);

    expect(queued.state.started).toBe(true);
    await finish(queued);
  });
});

describe("SendGate slot waiting ends early", () => {
  test("an aborted wait leaves no slot taken", async () => {
    const { gate } = makeGate();
    const acme = integration("acme", { maxConcurrentSends: 3 });
    const holders = [waitingSend(gate, acme), waitingSend(gate, acme)];
    const controller = new AbortController();
    const leaving = waitingSend(gate, acme, controller.signal);
    const staying = waitingSend(gate, acme);

    controller.abort();

    await expect(leaving.running).rejects.toBeInstanceOf(SlotWaitAbortedError);
    expect(leaving.state.started).toBe(false);
    expect(waitingOf(gate, "acme")).toBe(1);
    holders[0]!.succeed();
    await holders[0]!.running;
    await settle();
    expect(staying.state.started).toBe(true);
    holders[1]!.succeed();
    staying.succeed();
    await Promise.all([holders[1]!.running, staying.running]);

    expect(gate.flowStates()[0]).toMatchObject({ inFlight: 0, waiting: 0 });
    const later = [waitingSend(gate, acme), waitingSend(gate, acme)];
    await settle();
    expect(later.map((send) => send.state.started)).toEqual([true, true]);
    later.forEach((send) => send.succeed());
    await Promise.all(later.map((send) => send.running));
  });

  test("aborted signal fails at once", async () => {
    const { gate } = makeGate();
    const acme = integration("acme", { maxConcurrentSends: 1 });
    const first = waitingSend(gate, acme);
    const controller = new AbortController();
    controller.abort();

    const late = waitingSend(gate, acme, controller.signal);

    await expect(late.running).rejects.toBeInstanceOf(SlotWaitAbortedError);
    expect(waitingOf(gate, "acme")).toBe(0);
    first.succeed();
    await first.running;
  });

  test("opened circuit fails the waiters", async () => {
    const { gate } = makeGate({ circuit: { failureThreshold: 1, openMs: 1_000, halfOpenProbes: 1 } });
    const acme = integration("acme", { maxConcurrentSends: 1 });
    const first = waitingSend(gate, acme);
    const queued = [waitingSend(gate, acme), waitingSend(gate, acme)];

    first.fail(gatewayFailure("unavailable", 503));

    await expect(first.running).rejects.toBeInstanceOf(GatewayError);
    for (const send of queued) {
      const error = await send.running.then(
        () => undefined,
        (reason: unknown) => reason,
      );
      expect(error).toBeInstanceOf(FlowLimitError);
      expect((error as FlowLimitError).info.reason).toBe("CIRCUIT_OPEN");
      expect(send.state.started).toBe(false);
    }
    expect(gate.flowStates()[0]).toMatchObject({ circuit: "open", inFlight: 0, waiting: 0 });
  });

  test("rate limit applies after the wait", async () => {
    const { gate } = makeGate();
    const acme = integration("acme", { maxConcurrentSends: 1, maxSendsPerSecond: 1 });
    const first = waitingSend(gate, acme);
    const queued = waitingSend(gate, acme);

    first.succeed();
    await first.running;

    const error = await queued.running.then(
      () => undefined,
      (reason: unknown) => reason,
    );
    expect((error as FlowLimitError).info.reason).toBe("RATE_LIMITED");
    expect(queued.state.started).toBe(false);
    expect(gate.flowStates()[0]).toMatchObject({ inFlight: 0, waiting: 0 });
  });
});

describe("SendGate slot waiting follows a changed integration", () => {
  test("raised limit starts waiters", async () => {
    const { gate } = makeGate();
    const acme = integration("acme", { maxConcurrentSends: 1 });
    const first = waitingSend(gate, acme);
    const queued = [waitingSend(gate, acme), waitingSend(gate, acme)];
    await settle();

    gate.applyLimits(integration("acme", { maxConcurrentSends: 4 }));
    await settle();

    expect(queued.map((send) => send.state.started)).toEqual([true, true]);
    for (const send of [first, ...queued]) {
      send.succeed();
      await send.running;
    }
  });

  test("lowered limit holds waiters", async () => {
    const { gate } = makeGate();
    const acme = integration("acme", { maxConcurrentSends: 3 });
    const holders = [waitingSend(gate, acme), waitingSend(gate, acme)];
    const queued = waitingSend(gate, acme);

    gate.applyLimits(integration("acme", { maxConcurrentSends: 1 }));
    await finish(holders[0]!);
    expect(queued.state.started).toBe(false);

    await finish(holders[1]!);
    expect(queued.state.started).toBe(true);
    await finish(queued);
  });

  test("ended waits take no slot", async () => {
    const { gate } = makeGate();
    const acme = integration("acme", { maxConcurrentSends: 1 });
    const first = waitingSend(gate, acme);
    const queued = [waitingSend(gate, acme), waitingSend(gate, acme)];
    const notFound = new NotFoundError("integration", "acme");

    gate.endWaits("acme", notFound);

    for (const send of queued) {
      await expect(send.running).rejects.toBe(notFound);
      expect(send.state.started).toBe(false);
    }
    expect(gate.flowStates()[0]).toMatchObject({ inFlight: 1, waiting: 0 });
    first.succeed();
    await first.running;
    expect(gate.flowStates()[0]).toMatchObject({ inFlight: 0, waiting: 0 });
  });

  test("waiter sends through the reread integration", async () => {
    const { gate } = makeGate();
    const acme = integration("acme", { maxConcurrentSends: 1 });
    const first = waitingSend(gate, acme);
    const changed = integration("acme", { maxConcurrentSends: 1, defaultSender: "Changed" });
    const sentThrough: Integration[] = [];

    const queued = gate.run(acme, { waitForSlot: neverAborted, reread: async () => changed }, async (_deadlineMs, current) => {
      sentThrough.push(current);
      return "sent";
    });
    first.succeed();
    await first.running;

    await expect(queued).resolves.toBe("sent");
    expect(sentThrough).toEqual([changed]);
  });

  test("failed reread gives the slot back", async () => {
    const { gate } = makeGate();
    const acme = integration("acme", { maxConcurrentSends: 1 });
    const first = waitingSend(gate, acme);
    const notFound = new NotFoundError("integration", "acme");
    let called = false;

    const queued = gate.run(acme, { waitForSlot: neverAborted, reread: () => Promise.reject(notFound) }, async () => {
      called = true;
      return "sent";
    });
    first.succeed();
    await first.running;

    await expect(queued).rejects.toBe(notFound);
    expect(called).toBe(false);
    expect(gate.flowStates()[0]).toMatchObject({ inFlight: 0, waiting: 0 });
  });

  test("reread integration's rate limit applies", async () => {
    const { gate } = makeGate();
    const acme = integration("acme", { maxConcurrentSends: 1 });
    const limited = integration("acme", { maxConcurrentSends: 1, maxSendsPerSecond: 1 });
    // Takes the only token of the rate limit.
    const first = waitingSend(gate, limited);

    const queued = gate.run(acme, { waitForSlot: neverAborted, reread: async () => limited }, async () => "sent");
    first.succeed();
    await first.running;

    const error = await queued.then(
      () => undefined,
      (reason: unknown) => reason,
    );
    expect((error as FlowLimitError).info.reason).toBe("RATE_LIMITED");
  });
});

describe("SendGate slot kept for a direct send", () => {
  test("rejected direct send gets next slot", async () => {
    const { gate } = makeGate();
    const acme = integration("acme", { maxConcurrentSends: 1 });
    const first = waitingSend(gate, acme);
    const queued = waitingSend(gate, acme);
    await rejectionOf(gate, acme);

    // The slot stays kept for the 1 s of the retry-after header plus the margin, far longer than this test.
    first.succeed();
    await first.running;
    await settle();

    expect(queued.state.started).toBe(false);
    expect(gate.flowStates()[0]).toMatchObject({ inFlight: 0, waiting: 1 });
    await sendOk(gate, acme);
    await settle();
    expect(queued.state.started).toBe(true);
    queued.succeed();
    await queued.running;
  });

  test("direct sends get every other slot", async () => {
    const { gate } = makeGate();
    const acme = integration("acme", { maxConcurrentSends: 1 });
    const first = waitingSend(gate, acme);
    const queued = [waitingSend(gate, acme), waitingSend(gate, acme)];
    await rejectionOf(gate, acme);
    first.succeed();
    await first.running;

    const direct = heldSend();
    const directRunning = gate.run(acme, {}, direct.send);
    await rejectionOf(gate, acme);
    direct.succeed();
    await directRunning;
    await settle();

    expect(queued.map((send) => send.state.started)).toEqual([true, false]);
    queued[0]!.succeed();
    await queued[0]!.running;
    await sendOk(gate, acme);
    await settle();
    expect(queued[1]!.state.started).toBe(true);
    queued[1]!.succeed();
    await queued[1]!.running;
  });

  /**
   * Starts a send that takes the only slot of a limit-1 integration and one
   * that waits, rejects a direct send, and lets the first send finish, so
   * that the slot is kept. The send time stays 0, far below the 1 s of the
   * rejection's `retry-after` header. Then moves the timers to 1 ms before
   * that header's wait plus the margin ends, and checks that the slot is
   * still kept.
   */
  async function keepSlotUntilMarginEnds() {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    const { gate } = makeGate();
    const acme = integration("acme", { maxConcurrentSends: 1 });
    const first = waitingSend(gate, acme);
    const queued = waitingSend(gate, acme);
    const rejected = await rejectionOf(gate, acme);
    expect(retryAfterMsOf(rejected)).toBe(1_000);
    await finish(first);

    vi.advanceTimersByTime(retryAfterMsOf(rejected) + RETRY_AFTER_MARGIN_MS - 1);
    await settle();
    expect(queued.state.started).toBe(false);
    return { gate, acme, queued };
  }

  afterEach(() => {
    vi.useRealTimers();
  });

  test("kept slot waits for a caller that honours retry-after", async () => {
    const { gate, acme, queued } = await keepSlotUntilMarginEnds();

    await sendOk(gate, acme);
    await settle();

    expect(queued.state.started).toBe(true);
    await finish(queued);
  });

  test("unused kept slot goes to waiter after the margin", async () => {
    const { gate, queued } = await keepSlotUntilMarginEnds();

    vi.advanceTimersByTime(1);
    await settle();

    expect(queued.state.started).toBe(true);
    await finish(queued);
    expect(gate.flowStates()[0]).toMatchObject({ inFlight: 0, waiting: 0 });
  });

  test("kept slot freed when waiters leave", async () => {
    const { gate, advance } = makeGate();
    const acme = integration("acme", { maxConcurrentSends: 1 });
    const first = waitingSend(gate, acme);
    const controller = new AbortController();
    const leaving = waitingSend(gate, acme, controller.signal);
    await rejectionOf(gate, acme);
    first.succeed();
    await first.running;

    controller.abort();
    await expect(leaving.running).rejects.toBeInstanceOf(SlotWaitAbortedError);

    // An entry with a kept slot is not idle, so the sweep would keep it.
    advance(IDLE_ENTRY_MS);
    await sendOk(gate, integration("trigger"));
    expect(gate.flowStates().map((state) => state.integrationId)).toEqual(["trigger"]);
  });
});
