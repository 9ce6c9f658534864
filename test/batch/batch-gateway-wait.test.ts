// A batch's pause after a gateway's 429, and the early end of a circuit's cool-down, for
// messages that wait for a concurrency slot or for a concurrent call with the same key.
import { performance } from "node:perf_hooks";

import { afterEach, describe, expect, test } from "vitest";

import { deferred, sleep, startFlowTestBed, waitFor, type FlowTestBed } from "../flow/flow-fixtures.js";
import { acceptedByRecipient, codesOf, messages, recipientOf } from "./batch-fixtures.js";

/** Concurrency limit at which a batch takes 2 slots, so that with a SendSms in flight its second message waits for a slot. */
const SMALL_LIMIT = 3;
/** Recipient of the SendSms that occupies a slot. */
const HOLDER = "+15579000000";

let bed: FlowTestBed | undefined;

afterEach(async () => {
  await bed?.stop();
  bed = undefined;
});

/** Returns when the gateway received the first request for each recipient, in ms since `start`. */
function firstRequestAt(times: { recipient: string; ms: number }[], recipient: string): number {
  const found = times.find((entry) => entry.recipient === recipient);
  expect(found, `a request for ${recipient}`).toBeDefined();
  return found!.ms;
}

describe("pause after a 429 with Retry-After", () => {
  test("holds a message waiting for a slot", { timeout: 20_000 }, async () => {
    bed = await startFlowTestBed({ batchConcurrency: 4, sendMaxAttempts: 1 });
    const gateway = bed.gateway;
    const releaseHolder = deferred();
    const times: { recipient: string; ms: number }[] = [];
    const start = performance.now();
    gateway.on("/pause", async (request) => {
      const recipient = recipientOf(request);
      times.push({ recipient, ms: performance.now() - start });
      if (recipient === HOLDER) {
        await releaseHolder.promise;
        return acceptedByRecipient(request);
      }
      if (recipient === "+1555000000") {
        await sleep(300);
        return { status: 429, headers: { "retry-after": "3" } };
      }
      return acceptedByRecipient(request);
    });
    await bed.configure("pause", gateway.url("/pause"), { maxConcurrentSends: SMALL_LIMIT });
    const holder = bed.clients.sms.sendSms({ integrationId: "pause", to: HOLDER, content: "occupies a slot" });
    await waitFor(() => gateway.requestsTo("/pause").length === 1, "the SendSms to hold a slot");

    const response = await bed.clients.sms.sendSmsBatch({ integrationId: "pause", messages: messages(3) });
    releaseHolder.resolve();
    await holder;

    expect(codesOf(response)).toEqual(["RESOURCE_EXHAUSTED", "OK", "OK"]);
    // The 429 came about 300 ms after message 0 went out, and message 1 waited for a slot meanwhile.
    const replied = firstRequestAt(times, "+1555000000") + 300;
    expect(firstRequestAt(times, "+1555000001") - replied).toBeGreaterThanOrEqual(2_900);
  });

  test("follows a concurrent call's 429", { timeout: 20_000 }, async () => {
    bed = await startFlowTestBed({ batchConcurrency: 1, sendMaxAttempts: 1, circuitFailureThreshold: 0 });
    const gateway = bed.gateway;
    const times: { recipient: string; ms: number }[] = [];
    const start = performance.now();
    gateway.on("/replayed", async (request) => {
      times.push({ recipient: recipientOf(request), ms: performance.now() - start });
      await sleep(300);
      return { status: 429, headers: { "retry-after": "3" } };
    });
    await bed.configure("replayed", gateway.url("/replayed"));
    const keyed = { to: "+1555000000", content: "message 0", idempotencyKey: "replayed-0" };
    const single = bed.clients.sms.sendSms({ integrationId: "replayed", ...keyed }).catch(() => undefined);
    await waitFor(() => gateway.requestsTo("/replayed").length === 1, "the SendSms to reach the gateway");

    // The batch's first message has the same key, so it waits for the SendSms and gets its 429.
    const response = await bed.clients.sms.sendSmsBatch({ integrationId: "replayed", messages: [keyed, ...messages(3).slice(1)] });
    await single;

    expect(codesOf(response)[0]).toBe("RESOURCE_EXHAUSTED");
    // The batch's message 0 got the SendSms's 429 as a replay, which is the gateway's reply of a moment ago.
    const replied = firstRequestAt(times, "+1555000000") + 300;
    expect(firstRequestAt(times, "+1555000001") - replied).toBeGreaterThanOrEqual(2_900);
  });
});

describe("cool-down ended by a change of gateway settings", () => {
  test("a message waiting for a slot probes", { timeout: 20_000 }, async () => {
    bed = await startFlowTestBed({ batchConcurrency: 4, sendMaxAttempts: 1, circuitFailureThreshold: 1, circuitOpenMs: 30_000 });
    const gateway = bed.gateway;
    const releaseOld = deferred();
    gateway.on("/old", async () => {
      await releaseOld.promise;
      return { status: 500, json: { error: "down" } };
    });
    gateway.on("/new", acceptedByRecipient);
    await bed.configure("moved", gateway.url("/old"), { maxConcurrentSends: SMALL_LIMIT });
    const holder = bed.clients.sms.sendSms({ integrationId: "moved", to: HOLDER, content: "occupies a slot" }).catch(() => undefined);
    await waitFor(() => gateway.requestsTo("/old").length === 1, "the SendSms to hold a slot");
    const call = bed.clients.sms.sendSmsBatch({ integrationId: "moved", messages: messages(3) });
    await waitFor(() => bed!.flowState("moved")?.waiting === 1, "a batch message to wait for a slot");

    // The operator corrects base_url while the sends to the old one are in flight; their 500s then open the circuit.
    await bed.configure("moved", gateway.url("/new"), { maxConcurrentSends: SMALL_LIMIT });
    releaseOld.resolve();
    const response = await call;
    await holder;

    // The message that waited for a slot read the new URL, so it probes it instead of waiting out the cool-down.
    expect(codesOf(response).slice(1)).toEqual(["OK", "OK"]);
    expect(gateway.requestsTo("/new")).toHaveLength(2);
  });
});
