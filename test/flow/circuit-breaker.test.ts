import { describe, expect, test } from "vitest";

import { CircuitBreaker, type CircuitBreakerSettings, type SendOutcome } from "../../src/flow/circuit-breaker.js";

const SETTINGS: CircuitBreakerSettings = { failureThreshold: 3, openMs: 1000, halfOpenProbes: 1 };

/** Admits one send at `nowMs` and records its outcome at the same time. */
function sendOnce(breaker: CircuitBreaker, outcome: SendOutcome, nowMs: number) {
  expect(breaker.rejection(nowMs)).toBeUndefined();
  const permit = breaker.admit(nowMs);
  return { permit, transition: breaker.record(permit, outcome, nowMs) };
}

/** Returns a breaker that opened at time 0. */
function openedBreaker(settings: CircuitBreakerSettings = SETTINGS): CircuitBreaker {
  const breaker = new CircuitBreaker(settings);
  for (let i = 0; i < settings.failureThreshold; i++) {
    sendOnce(breaker, "failure", 0);
  }
  return breaker;
}

describe("CircuitBreaker", () => {
  test("opens after the threshold of consecutive failures", () => {
    const breaker = new CircuitBreaker(SETTINGS);

    expect(sendOnce(breaker, "failure", 0).transition).toBeUndefined();
    expect(sendOnce(breaker, "failure", 0).transition).toBeUndefined();
    expect(breaker.state(0)).toBe("closed");
    expect(breaker.consecutiveFailures).toBe(2);
    expect(sendOnce(breaker, "failure", 0).transition).toBe("opened");

    expect(breaker.state(0)).toBe("open");
    expect(breaker.rejection(0)).toEqual({ state: "open", remainingMs: 1000 });
    expect(breaker.rejection(999.5)).toEqual({ state: "open", remainingMs: 1 });
  });

  test("a success resets the failure count", () => {
    const breaker = new CircuitBreaker(SETTINGS);

    sendOnce(breaker, "failure", 0);
    sendOnce(breaker, "failure", 0);
    sendOnce(breaker, "success", 0);
    sendOnce(breaker, "failure", 0);
    sendOnce(breaker, "failure", 0);

    expect(breaker.consecutiveFailures).toBe(2);
    expect(breaker.state(0)).toBe("closed");
  });

  test("ignored outcomes neither count nor reset", () => {
    const breaker = new CircuitBreaker(SETTINGS);

    sendOnce(breaker, "failure", 0);
    sendOnce(breaker, "ignored", 0);
    sendOnce(breaker, "failure", 0);

    expect(breaker.consecutiveFailures).toBe(2);
    expect(sendOnce(breaker, "failure", 0).transition).toBe("opened");
  });

  test("half-open after the cool-down lets the probes through", () => {
    const breaker = openedBreaker({ ...SETTINGS, halfOpenProbes: 2 });

    expect(breaker.state(1000)).toBe("half_open");
    expect(breaker.rejection(1000)).toBeUndefined();
    expect(breaker.admit(1000).probe).toBe(true);
    expect(breaker.admit(1000).probe).toBe(true);

    expect(breaker.probesInFlight).toBe(2);
    expect(breaker.rejection(1000)).toEqual({ state: "half_open", probesInFlight: 2 });
  });

  test("an ended cool-down makes the circuit half-open", () => {
    const breaker = openedBreaker();

    breaker.endCoolDown(200);

    expect(breaker.state(200)).toBe("half_open");
    expect(breaker.admit(200).probe).toBe(true);
  });

  test("an ended cool-down is half-open at any clock value", () => {
    // Fractional clock values, as performance.now() gives, where now - openMs + openMs can exceed now.
    const breaker = new CircuitBreaker({ ...SETTINGS, openMs: 30_000 });
    for (let i = 0; i < SETTINGS.failureThreshold; i++) {
      sendOnce(breaker, "failure", 4000.5);
    }

    breaker.endCoolDown(4420.33);

    expect(breaker.state(4420.33)).toBe("half_open");
  });

  test("ending the cool-down leaves a half-open circuit alone", () => {
    const breaker = openedBreaker();
    breaker.admit(1000);

    breaker.endCoolDown(1500);

    expect(breaker.rejection(1500)).toEqual({ state: "half_open", probesInFlight: 1 });
  });

  test("a successful probe closes the circuit", () => {
    const breaker = openedBreaker();

    const { permit, transition } = sendOnce(breaker, "success", 1000);

    expect(permit.probe).toBe(true);
    expect(transition).toBe("closed");
    expect(breaker.state(1000)).toBe("closed");
    expect(breaker.consecutiveFailures).toBe(0);
    expect(breaker.atRest).toBe(true);
    expect(breaker.admit(1000).probe).toBe(false);
  });

  test("a failed probe opens the circuit again", () => {
    const breaker = openedBreaker();

    expect(sendOnce(breaker, "failure", 1500).transition).toBe("reopened");

    expect(breaker.rejection(1500)).toEqual({ state: "open", remainingMs: 1000 });
    expect(breaker.state(2499)).toBe("open");
    expect(breaker.state(2500)).toBe("half_open");
  });

  test("an ignored probe frees its slot", () => {
    const breaker = openedBreaker();
    const permit = breaker.admit(1000);
    expect(breaker.rejection(1000)).toEqual({ state: "half_open", probesInFlight: 1 });

    expect(breaker.record(permit, "ignored", 1000)).toBeUndefined();

    expect(breaker.state(1000)).toBe("half_open");
    expect(breaker.rejection(1000)).toBeUndefined();
  });

  test("sends admitted before opening cannot close it", () => {
    const breaker = new CircuitBreaker(SETTINGS);
    const early = breaker.admit(0);
    for (let i = 0; i < 3; i++) {
      sendOnce(breaker, "failure", 0);
    }

    expect(breaker.record(early, "success", 10)).toBeUndefined();

    expect(breaker.state(10)).toBe("open");
  });

  test("failures from before a close do not count after it", () => {
    const breaker = openedBreaker();
    const stale = [breaker.admit(1000), breaker.admit(1000)];
    expect(breaker.record(stale[0]!, "success", 1000)).toBe("closed");

    expect(breaker.record(stale[1]!, "failure", 1000)).toBeUndefined();

    expect(breaker.consecutiveFailures).toBe(0);
  });

  test("the first probe to finish decides", () => {
    const breaker = openedBreaker({ ...SETTINGS, halfOpenProbes: 2 });
    const first = breaker.admit(1000);
    const second = breaker.admit(1000);

    expect(breaker.record(first, "failure", 1100)).toBe("reopened");
    expect(breaker.record(second, "success", 1200)).toBeUndefined();

    expect(breaker.state(1200)).toBe("open");
  });

  test("threshold 0 never opens", () => {
    const breaker = new CircuitBreaker({ ...SETTINGS, failureThreshold: 0 });

    for (let i = 0; i < 100; i++) {
      sendOnce(breaker, "failure", 0);
    }

    expect(breaker.state(0)).toBe("closed");
    expect(breaker.consecutiveFailures).toBe(100);
  });
});
