import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { ErrorInfoSchema, GatewayErrorSchema, RetryInfoSchema } from "../../gen/smsgateway/v1/errors_pb.js";
import { SmsService } from "../../gen/smsgateway/v1/sms_service_pb.js";
import { CLIENT_KINDS, type ClientKind } from "../helpers/clients.js";
import type { RecordedRequest, ScriptedReply } from "../helpers/scripted-gateway.js";
import { startTestService, type TestService } from "../helpers/service.js";
import {
  ACCEPTED,
  connectClients,
  deferred,
  errorInfoOf,
  integrationFor,
  rejectionOf,
  retryDelayMsOf,
  sleep,
  startFlowTestBed,
  waitFor,
  type FlowTestBed,
  type ServiceClients,
} from "../flow/flow-fixtures.js";
import {
  acceptedByRecipient,
  codesOf,
  detailsOf,
  errorOf,
  InFlightCounter,
  messages,
  reasonOf,
  recipientOf,
  sentOf,
} from "./batch-fixtures.js";

const BATCH_CONCURRENCY = 4;
/** A small concurrency limit, which leaves batch messages 2 slots and SendSms the third. */
const SMALL_LIMIT = 3;
/** Recipient of the SendSms calls that `bed.send` makes. */
const SINGLE_RECIPIENT = "+15550001";
const FAILURE_THRESHOLD = 2;
/** Long enough that a batch right after the circuit opened finds it open, short enough to wait out. */
const OPEN_MS = 1_500;

let bed: FlowTestBed;

beforeAll(async () => {
  bed = await startFlowTestBed({
    batchConcurrency: BATCH_CONCURRENCY,
    circuitFailureThreshold: FAILURE_THRESHOLD,
    circuitOpenMs: OPEN_MS,
  });
});

afterAll(async () => {
  await bed.stop();
});

/**
 * Serves `path` so that requests wait until `holdUntil` holds for the
 * requests in flight, then the gateway replies to every request. Returns the counter.
 */
function countingPath(path: string, holdUntil: (counter: InFlightCounter) => boolean): InFlightCounter {
  const counter = new InFlightCounter();
  const released = deferred();
  bed.gateway.on(path, async (request) => {
    const leave = counter.enter();
    if (holdUntil(counter)) {
      released.resolve();
    }
    await released.promise;
    leave();
    return acceptedByRecipient(request);
  });
  return counter;
}

/**
 * Serves `path` so that the requests of batch messages wait until `release`
 * is called, while the gateway accepts a SendSms of `bed.send` at once.
 * Returns the counter of batch messages in flight.
 */
function holdBatchMessages(path: string): { counter: InFlightCounter; release(): void } {
  const counter = new InFlightCounter();
  const released = deferred();
  bed.gateway.on(path, async (request) => {
    if (recipientOf(request) !== SINGLE_RECIPIENT) {
      const leave = counter.enter();
      await released.promise;
      leave();
    }
    return acceptedByRecipient(request);
  });
  return { counter, release: released.resolve };
}

/** Returns the "batch finished" log line of an integration, once written. */
function batchLogLine(integrationId: string): Record<string, unknown> | undefined {
  return bed.service.logLines.find((line) => line.msg === "batch finished" && line.integrationId === integrationId);
}

/** Returns the pipeline's log line of the call with this request id. */
function rpcLogLine(requestId: unknown): Record<string, unknown> | undefined {
  return bed.service.logLines.find((line) => line.msg === "rpc finished" && line.requestId === requestId);
}

describe("concurrency", () => {
  test("stays within BATCH_CONCURRENCY", async () => {
    const counter = countingPath("/wide", (inFlight) => inFlight.current === BATCH_CONCURRENCY);
    await bed.configure("wide", bed.gateway.url("/wide"));

    const response = await bed.clients.sms.sendSmsBatch({ integrationId: "wide", messages: messages(20) });

    expect(codesOf(response).every((code) => code === "OK")).toBe(true);
    expect(counter.max).toBe(BATCH_CONCURRENCY);
    expect(bed.gateway.requestsTo("/wide")).toHaveLength(20);
  });

  test("waits for slots that other sends hold", async () => {
    await bed.configure("shared", bed.gateway.url("/shared"), { maxConcurrentSends: SMALL_LIMIT });
    const holder = await holdSlots("shared", "/shared", 1);

    const call = bed.clients.sms.sendSmsBatch({ integrationId: "shared", messages: messages(6) });
    try {
      await waitFor(() => bed.flowState("shared")?.waiting === 1, "a message to wait for a slot");
      // The single send and one message: the batch leaves the last slot free.
      expect(bed.flowState("shared")?.inFlight).toBe(SMALL_LIMIT - 1);
    } finally {
      await holder.release();
    }

    expect(codesOf(await call)).toEqual(Array(6).fill("OK"));
  });
});

describe("a slot left for SendSms", () => {
  test("SendSms during a lone batch succeeds at once", async () => {
    const heldBatch = holdBatchMessages("/lone");
    await bed.configure("lone", bed.gateway.url("/lone"), { maxConcurrentSends: SMALL_LIMIT });
    const call = bed.clients.sms.sendSmsBatch({ integrationId: "lone", messages: messages(12) });
    try {
      await waitFor(() => heldBatch.counter.current >= SMALL_LIMIT - 1, "the batch to take the slots it may");
      // The batch runs only as many messages at once as it may take slots, so none waits.
      expect(bed.flowState("lone")).toMatchObject({ inFlight: SMALL_LIMIT - 1, waiting: 0 });

      for (let i = 0; i < 3; i++) {
        expect((await bed.send("lone")).id).toBe(`id-${SINGLE_RECIPIENT}`);
      }
    } finally {
      heldBatch.release();
    }

    expect(codesOf(await call)).toEqual(Array(12).fill("OK"));
    expect(heldBatch.counter.max).toBe(SMALL_LIMIT - 1);
  });

  test("a limit of 1 still lets a batch run", async () => {
    const counter = countingPath("/one-slot", (inFlight) => inFlight.current === 1);
    await bed.configure("one-slot", bed.gateway.url("/one-slot"), { maxConcurrentSends: 1 });

    const response = await bed.clients.sms.sendSmsBatch({ integrationId: "one-slot", messages: messages(4) });

    expect(codesOf(response)).toEqual(Array(4).fill("OK"));
    expect(counter.max).toBe(1);
  });
});

/** Tries a caller that honours `retry-after` makes before `sendHonouringRetryAfter` gives up. */
const RETRY_AFTER_TRIES = 4;

/**
 * Sends a SendSms through integration `id` as a plain HTTP client does: after
 * each rejection for `reason`, it waits the whole seconds of the `retry-after`
 * header and tries again. Returns the tries it took, or `RETRY_AFTER_TRIES + 1`
 * when it gave up, and the batch requests the gateway had received by then.
 */
async function sendHonouringRetryAfter(
  id: string,
  reason: string,
  batchRequests: () => number,
): Promise<{ tries: number; batchSentBefore: number }> {
  for (let tries = 1; tries <= RETRY_AFTER_TRIES; tries++) {
    try {
      await bed.send(id);
      return { tries, batchSentBefore: batchRequests() };
    } catch (error) {
      const rejected = ConnectError.from(error);
      expect(errorInfoOf(rejected).reason).toBe(reason);
      const seconds = Number(rejected.metadata.get("retry-after"));
      expect(seconds).toBeGreaterThanOrEqual(1);
      await sleep(seconds * 1000);
    }
  }
  return { tries: RETRY_AFTER_TRIES + 1, batchSentBefore: batchRequests() };
}

/** Serves `path` like a gateway that takes `delayMs` to accept each SMS, and returns a count of batch requests it received. */
function slowGateway(path: string, delayMs: number): () => number {
  bed.gateway.on(path, async (request) => {
    await sleep(delayMs);
    return acceptedByRecipient(request);
  });
  return () => bed.gateway.requestsTo(path).filter((request) => recipientOf(request) !== SINGLE_RECIPIENT).length;
}

/** Returns `count` valid messages to recipients that differ from those of every other `batch`. */
function batchMessages(batch: number, count: number) {
  return messages(count).map((message, index) => ({ ...message, to: `+1556${batch}${String(index).padStart(5, "0")}` }));
}

/**
 * Sends `count` SendSms calls through integration `id`, whose gateway path
 * `path` keeps them waiting until `release` is called, and returns once they
 * all reached the gateway, so that they take `count` slots.
 */
async function holdSlots(id: string, path: string, count: number): Promise<{ release(): Promise<void> }> {
  const released = deferred();
  bed.gateway.on(path, async (request) => {
    await released.promise;
    return acceptedByRecipient(request);
  });
  const singles = Array.from({ length: count }, (_, index) =>
    bed.clients.sms.sendSms({ integrationId: id, to: `+155790000${index}`, content: "holds a slot" }),
  );
  await waitFor(() => bed.gateway.requestsTo(path).length === count, "the single sends to reach the gateway");
  return {
    async release() {
      released.resolve();
      await Promise.all(singles);
    },
  };
}

/**
 * Checks that integration `id`, whose limit is `SMALL_LIMIT`, has no
 * message left waiting and that only its `holders`, one per slot, reached
 * the gateway. Then releases them and checks that every slot is free: a
 * batch then has all but one of them in flight at once.
 */
async function expectSlotsFreeAfter(id: string, holders: { release(): Promise<void> }): Promise<void> {
  const path = `/${id}`;
  expect(bed.flowState(id)).toMatchObject({ inFlight: SMALL_LIMIT, waiting: 0 });
  expect(bed.gateway.requestsTo(path)).toHaveLength(SMALL_LIMIT);

  await holders.release();

  expect(bed.flowState(id)).toMatchObject({ inFlight: 0, waiting: 0 });
  const counter = countingPath(path, (inFlight) => inFlight.current === SMALL_LIMIT - 1);

  const response = await bed.clients.sms.sendSmsBatch({ integrationId: id, messages: batchMessages(9, 4) });

  expect(codesOf(response)).toEqual(Array(4).fill("OK"));
  expect(counter.max).toBe(SMALL_LIMIT - 1);
}

describe("waiting for a slot", () => {
  test("several batches leave a slot", async () => {
    const heldBatch = holdBatchMessages("/crowded");
    await bed.configure("crowded", bed.gateway.url("/crowded"), { maxConcurrentSends: SMALL_LIMIT });
    const sent = [0, 1, 2, 3].map((batch) => batchMessages(batch, 8));

    const calls = sent.map((batch) => bed.clients.sms.sendSmsBatch({ integrationId: "crowded", messages: batch }));
    try {
      // Each batch runs two messages at once. Two messages take the two slots that batches may use, and six wait.
      await waitFor(() => bed.flowState("crowded")?.waiting === 6, "six messages to wait for a slot");
      await bed.send("crowded");
    } finally {
      heldBatch.release();
    }
    const responses = await Promise.all(calls);

    for (const response of responses) {
      expect(codesOf(response)).toEqual(Array(8).fill("OK"));
    }
    const recipients = bed.gateway.requestsTo("/crowded").map(recipientOf).filter((to) => to !== SINGLE_RECIPIENT);
    expect(recipients.sort()).toEqual(sent.flat().map((message) => message.to).sort());
    expect(heldBatch.counter.max).toBe(SMALL_LIMIT - 1);
    expect(bed.flowState("crowded")).toMatchObject({ inFlight: 0, waiting: 0 });
  });

  test("a canceled wait leaves no slot taken", async () => {
    await bed.configure("cancel-wait", bed.gateway.url("/cancel-wait"), { maxConcurrentSends: SMALL_LIMIT });
    const holders = await holdSlots("cancel-wait", "/cancel-wait", SMALL_LIMIT);
    const controller = new AbortController();

    const call = bed.clients.sms.sendSmsBatch({ integrationId: "cancel-wait", messages: messages(3) }, { signal: controller.signal });
    await waitFor(() => bed.flowState("cancel-wait")?.waiting === 2, "two messages to wait for a slot");
    controller.abort();
    await rejectionOf(call);
    await waitFor(() => batchLogLine("cancel-wait") !== undefined, "the batch to finish");

    expect(batchLogLine("cancel-wait")).toMatchObject({ succeeded: 0, failed: 3, failuresByCode: { CANCELLED: 3 } });
    await expectSlotsFreeAfter("cancel-wait", holders);
  });

  test("a wait past the deadline leaves no slot taken", async () => {
    await bed.configure("late-wait", bed.gateway.url("/late-wait"), { maxConcurrentSends: SMALL_LIMIT });
    const holders = await holdSlots("late-wait", "/late-wait", SMALL_LIMIT);

    const response = await bed.clients.sms.sendSmsBatch({ integrationId: "late-wait", messages: messages(3) }, { timeoutMs: 1_000 });

    expect(codesOf(response)).toEqual(Array(3).fill("DEADLINE_EXCEEDED"));
    for (const result of response.results) {
      expect(reasonOf(errorOf(result))).toBe("MESSAGE_NOT_STARTED");
    }
    await expectSlotsFreeAfter("late-wait", holders);
  });

  test("SendSms is still rejected at the limit", async () => {
    await bed.configure("busy", bed.gateway.url("/busy"), { maxConcurrentSends: 1 });
    const holder = await holdSlots("busy", "/busy", 1);
    const call = bed.clients.sms.sendSmsBatch({ integrationId: "busy", messages: messages(2) });
    await waitFor(() => bed.flowState("busy")?.waiting === 1, "a message to wait for the slot");

    const rejected = await rejectionOf(bed.send("busy"));

    expect(rejected.code).toBe(Code.ResourceExhausted);
    expect(errorInfoOf(rejected).reason).toBe("CONCURRENCY_LIMIT");
    expect(retryDelayMsOf(rejected)).toBeGreaterThan(0);
    await holder.release();
    expect(codesOf(await call)).toEqual(["OK", "OK"]);
  });

  test("SendSms retrying after the retry-after header gets the only slot", async () => {
    const batchRequests = slowGateway("/one-slot-header", 30);
    await bed.configure("one-slot-header", bed.gateway.url("/one-slot-header"), { maxConcurrentSends: 1 });
    // Two batches, so that a message always waits; 2 x 80 messages of 30 ms each take about 5 s.
    const calls = [0, 1].map((batch) =>
      bed.clients.sms.sendSmsBatch({ integrationId: "one-slot-header", messages: batchMessages(batch, 80) }, { timeoutMs: 30_000 }),
    );
    await waitFor(() => bed.flowState("one-slot-header")?.waiting === 1 && batchRequests() >= 2, "a message to wait for the slot");

    const single = await sendHonouringRetryAfter("one-slot-header", "CONCURRENCY_LIMIT", batchRequests);

    for (const response of await Promise.all(calls)) {
      expect(codesOf(response)).toEqual(Array(80).fill("OK"));
    }
    expect(single.tries).toBeLessThanOrEqual(2);
    expect(single.batchSentBefore).toBeLessThan(160);
  });
});

/**
 * Serves `path` so that the request of each of the first `heldCount`
 * messages of a batch built by `messages` waits until the test releases it
 * with `release(index)`. The gateway accepts the other messages at once.
 */
function heldPerMessage(path: string, heldCount: number): { counter: InFlightCounter; release(index: number): void } {
  const counter = new InFlightCounter();
  const releases = new Map<string, ReturnType<typeof deferred>>();
  const holdOf = (to: string) => {
    let hold = releases.get(to);
    if (hold === undefined) {
      hold = deferred();
      releases.set(to, hold);
    }
    return hold;
  };
  bed.gateway.on(path, async (request) => {
    const leave = counter.enter();
    const to = recipientOf(request);
    if (messages(heldCount).some((message) => message.to === to)) {
      await holdOf(to).promise;
    }
    leave();
    return acceptedByRecipient(request);
  });
  return { counter, release: (index) => holdOf(messages(index + 1)[index]!.to).resolve() };
}

describe("a changed integration", () => {
  test("a raised limit reaches later messages", async () => {
    const { counter, release } = heldPerMessage("/raised", 6);
    await bed.configure("raised", bed.gateway.url("/raised"), { maxConcurrentSends: 1 });
    const call = bed.clients.sms.sendSmsBatch({ integrationId: "raised", messages: messages(6) });
    await waitFor(() => bed.gateway.requestsTo("/raised").length === 1, "the first message to reach the gateway");

    await bed.configure("raised", bed.gateway.url("/raised"), { maxConcurrentSends: 4 });
    release(0);
    try {
      await waitFor(() => counter.current === 3, "three messages in flight, one less than the raised limit");
    } finally {
      [1, 2, 3, 4, 5].forEach(release);
    }

    expect(codesOf(await call)).toEqual(Array(6).fill("OK"));
    expect(counter.max).toBe(3);
  });

  test("a lowered limit reaches later messages", async () => {
    const { counter, release } = heldPerMessage("/lowered", 3);
    await bed.configure("lowered", bed.gateway.url("/lowered"), { maxConcurrentSends: 4 });
    const call = bed.clients.sms.sendSmsBatch({ integrationId: "lowered", messages: messages(6) });
    await waitFor(() => counter.current === 3, "three messages in flight");

    await bed.configure("lowered", bed.gateway.url("/lowered"), { maxConcurrentSends: 1 });
    release(0);
    await waitFor(
      () => bed.flowState("lowered")?.waiting === 1 || bed.gateway.requestsTo("/lowered").length > 3,
      "the next message to wait for a slot or reach the gateway",
    );
    const waitingMessages = bed.flowState("lowered")?.waiting;
    const requests = bed.gateway.requestsTo("/lowered").length;
    release(1);
    release(2);

    expect(waitingMessages).toBe(1);
    expect(requests).toBe(3);
    expect(codesOf(await call)).toEqual(Array(6).fill("OK"));
  });

  test("deletion fails later messages with NOT_FOUND", async () => {
    const { release } = heldPerMessage("/deleted", 1);
    await bed.configure("deleted", bed.gateway.url("/deleted"), { maxConcurrentSends: 1 });
    const call = bed.clients.sms.sendSmsBatch({ integrationId: "deleted", messages: messages(4) });
    await waitFor(() => bed.gateway.requestsTo("/deleted").length === 1, "the first message to reach the gateway");

    await bed.clients.integrations.deleteIntegration({ id: "deleted" });
    release(0);
    const response = await call;

    expect(codesOf(response)).toEqual(["OK", "NOT_FOUND", "NOT_FOUND", "NOT_FOUND"]);
    expect(errorOf(response.results[1]).message).toContain('integration "deleted" not found');
    expect(bed.gateway.requestsTo("/deleted")).toHaveLength(1);
  });

  test("waiting messages start at a raised limit", async () => {
    await bed.configure("raised-wait", bed.gateway.url("/raised-wait"), { maxConcurrentSends: SMALL_LIMIT });
    const holders = await holdSlots("raised-wait", "/raised-wait", SMALL_LIMIT);
    const call = bed.clients.sms.sendSmsBatch({ integrationId: "raised-wait", messages: messages(4) });
    await waitFor(() => bed.flowState("raised-wait")?.waiting === 2, "two messages to wait for a slot");

    // The raised limit leaves batch messages 2 slots beside the holders, and SendSms one.
    await bed.configure("raised-wait", bed.gateway.url("/raised-wait"), { maxConcurrentSends: SMALL_LIMIT + 3 });
    try {
      await waitFor(() => bed.gateway.requestsTo("/raised-wait").length === SMALL_LIMIT + 2, "the waiting messages to reach the gateway");
    } finally {
      await holders.release();
    }

    expect(codesOf(await call)).toEqual(Array(4).fill("OK"));
  });

  test("deletion fails waiting messages with NOT_FOUND", async () => {
    await bed.configure("deleted-wait", bed.gateway.url("/deleted-wait"), { maxConcurrentSends: 1 });
    const holder = await holdSlots("deleted-wait", "/deleted-wait", 1);
    const call = bed.clients.sms.sendSmsBatch({ integrationId: "deleted-wait", messages: messages(3) });
    await waitFor(() => bed.flowState("deleted-wait")?.waiting === 1, "a message to wait for the slot");

    await bed.clients.integrations.deleteIntegration({ id: "deleted-wait" });
    try {
      await waitFor(() => batchLogLine("deleted-wait") !== undefined, "the batch to finish while the slot is held");
    } finally {
      await holder.release();
    }

    expect(codesOf(await call)).toEqual(Array(3).fill("NOT_FOUND"));
    expect(bed.gateway.requestsTo("/deleted-wait")).toHaveLength(1);
  });
});

describe("rate limit", () => {
  test("paces the batch instead of failing it", async () => {
    bed.gateway.on("/paced", acceptedByRecipient);
    await bed.configure("paced", bed.gateway.url("/paced"), { maxSendsPerSecond: 5 });

    const response = await bed.clients.sms.sendSmsBatch({ integrationId: "paced", messages: messages(8) }, { timeoutMs: 30_000 });

    expect(codesOf(response)).toEqual(Array(8).fill("OK"));
    expect(bed.gateway.requestsTo("/paced")).toHaveLength(8);
  });

  test("SendSms retrying at its retry delay is not starved", async () => {
    bed.gateway.on("/shared-rate", acceptedByRecipient);
    await bed.configure("shared-rate", bed.gateway.url("/shared-rate"), { maxSendsPerSecond: 4 });
    const batch = messages(12);
    const batchRequests = () => bed.gateway.requestsTo("/shared-rate").filter((request) => recipientOf(request) !== SINGLE_RECIPIENT);
    const call = bed.clients.sms.sendSmsBatch({ integrationId: "shared-rate", messages: batch }, { timeoutMs: 30_000 });
    await waitFor(() => batchRequests().length >= 4, "the batch to take the burst of 4");

    let batchSentBeforeSingle: number | undefined;
    while (batchSentBeforeSingle === undefined) {
      try {
        await bed.send("shared-rate");
        batchSentBeforeSingle = batchRequests().length;
      } catch (error) {
        const rejected = ConnectError.from(error);
        expect(errorInfoOf(rejected).reason).toBe("RATE_LIMITED");
        await sleep(retryDelayMsOf(rejected));
      }
    }

    expect(codesOf(await call)).toEqual(Array(12).fill("OK"));
    expect(batchSentBeforeSingle).toBeLessThan(12);
  });

  test("SendSms retrying after the retry-after header is not starved", async () => {
    const batchRequests = slowGateway("/rate-header", 30);
    await bed.configure("rate-header", bed.gateway.url("/rate-header"), { maxSendsPerSecond: 4 });
    // At 4 per second, 24 messages take about 5 s, and each retry-after is 1 s.
    const call = bed.clients.sms.sendSmsBatch({ integrationId: "rate-header", messages: messages(24) }, { timeoutMs: 30_000 });
    // The fifth message goes out once a token refilled, and by then the messages after it wait for one.
    await waitFor(() => batchRequests() >= 5, "batch messages to wait for a token");

    const single = await sendHonouringRetryAfter("rate-header", "RATE_LIMITED", batchRequests);

    expect(codesOf(await call)).toEqual(Array(24).fill("OK"));
    expect(single.tries).toBeLessThanOrEqual(2);
    expect(single.batchSentBefore).toBeLessThan(24);
  });

  test("fails messages whose wait passes the deadline", async () => {
    bed.gateway.on("/slow-rate", acceptedByRecipient);
    // A burst of one, then one send every 2 s: longer than the call's deadline.
    await bed.configure("slow-rate", bed.gateway.url("/slow-rate"), { maxSendsPerSecond: 0.5 });

    const response = await bed.clients.sms.sendSmsBatch({ integrationId: "slow-rate", messages: messages(3) }, { timeoutMs: 1_000 });

    expect(codesOf(response)).toEqual(["OK", "RESOURCE_EXHAUSTED", "RESOURCE_EXHAUSTED"]);
    const limited = errorOf(response.results[1]);
    expect(reasonOf(limited)).toBe("RATE_LIMITED");
    expect(detailsOf(limited, RetryInfoSchema)).toHaveLength(1);
    expect(bed.gateway.requestsTo("/slow-rate")).toHaveLength(1);
  });
});

describe("a gateway's 429", () => {
  /** Limit at which a batch sends one message at a time, leaving the other slot to SendSms. */
  const ONE_AT_A_TIME = 2;

  test("a long Retry-After halts the batch", async () => {
    bed.gateway.on("/limited-long", { status: 429, headers: { "retry-after": "60" }, json: { error: "slow down" } });
    await bed.configure("limited-long", bed.gateway.url("/limited-long"), { maxConcurrentSends: ONE_AT_A_TIME });

    const response = await bed.clients.sms.sendSmsBatch({ integrationId: "limited-long", messages: messages(5) });

    expect(codesOf(response)).toEqual(Array(5).fill("RESOURCE_EXHAUSTED"));
    expect(bed.gateway.requestsTo("/limited-long")).toHaveLength(1);
    expect(detailsOf(errorOf(response.results[0]), GatewayErrorSchema)[0]?.httpStatus).toBe(429);
    for (const result of response.results.slice(1)) {
      const error = errorOf(result);
      expect(reasonOf(error)).toBe("MESSAGE_NOT_STARTED");
      expect(error.message).toContain("asked to wait 60 s (Retry-After)");
      expect(Number(detailsOf(error, RetryInfoSchema)[0]?.retryDelay?.seconds)).toBeGreaterThan(50);
    }
  });

  test("a short Retry-After pauses the batch", { timeout: 15_000 }, async () => {
    const repliedAt: number[] = [];
    // Every attempt of the first message gets a 429 (SEND_MAX_ATTEMPTS is 3), and later requests are accepted.
    bed.gateway.on("/limited-short", (request) => {
      repliedAt.push(performance.now());
      return repliedAt.length <= 3 ? { status: 429, headers: { "retry-after": "1" } } : acceptedByRecipient(request);
    });
    await bed.configure("limited-short", bed.gateway.url("/limited-short"), { maxConcurrentSends: ONE_AT_A_TIME });

    const response = await bed.clients.sms.sendSmsBatch({ integrationId: "limited-short", messages: messages(2) });

    expect(codesOf(response)).toEqual(["RESOURCE_EXHAUSTED", "OK"]);
    expect(detailsOf(errorOf(response.results[0]), GatewayErrorSchema)[0]?.attempts).toBe(3);
    expect(repliedAt).toHaveLength(4);
    // The second message waited out the Retry-After of the first one's last reply (less the clock's millisecond).
    expect(repliedAt[3]! - repliedAt[2]!).toBeGreaterThanOrEqual(999);
  });

  test("a halted repeat reports earlier sends", async () => {
    bed.gateway.on("/limited-repeat", acceptedByRecipient);
    await bed.configure("limited-repeat", bed.gateway.url("/limited-repeat"), { maxConcurrentSends: ONE_AT_A_TIME });
    const keyed = messages(4).map((message, index) => ({ ...message, idempotencyKey: `limited-repeat-${index}` }));
    const first = await bed.clients.sms.sendSmsBatch({ integrationId: "limited-repeat", messages: keyed.slice(1) });
    bed.gateway.on("/limited-repeat", { status: 429, headers: { "retry-after": "60" } });

    const repeated = await bed.clients.sms.sendSmsBatch({ integrationId: "limited-repeat", messages: keyed });

    expect(codesOf(first)).toEqual(Array(3).fill("OK"));
    expect(codesOf(repeated)).toEqual(["RESOURCE_EXHAUSTED", "OK", "OK", "OK"]);
    expect(repeated.results.slice(1).map((result) => sentOf(result).replayed)).toEqual(Array(3).fill(true));
    expect(bed.gateway.requestsTo("/limited-repeat")).toHaveLength(4);
  });
});

describe("circuit breaker", () => {
  test("an open circuit fails the rest fast", async () => {
    bed.gateway.on("/down", { status: 500, json: { error: "maintenance" } });
    await bed.configure("down", bed.gateway.url("/down"), { maxConcurrentSends: 1 });

    const response = await bed.clients.sms.sendSmsBatch({ integrationId: "down", messages: messages(6) });

    expect(codesOf(response)).toEqual(Array(6).fill("UNAVAILABLE"));
    expect(detailsOf(errorOf(response.results[1]), GatewayErrorSchema)[0]?.httpStatus).toBe(500);
    for (const result of response.results.slice(FAILURE_THRESHOLD)) {
      const error = errorOf(result);
      expect(error.code).toBe(Code.Unavailable);
      expect(detailsOf(error, ErrorInfoSchema)[0]?.metadata["circuit_state"]).toBe("open");
      expect(reasonOf(error)).toBe("CIRCUIT_OPEN");
    }
    expect(response.failedCount).toBe(6);
    expect(bed.gateway.requestsTo("/down")).toHaveLength(FAILURE_THRESHOLD);
  });

  test("an open circuit still replays sent keys", async () => {
    bed.gateway.on("/replay-open", acceptedByRecipient);
    await bed.configure("replay-open", bed.gateway.url("/replay-open"));
    const keyed = messages(4).map((message, index) => ({ ...message, idempotencyKey: `replay-open-${index}` }));
    const first = await bed.clients.sms.sendSmsBatch({ integrationId: "replay-open", messages: keyed });
    const single = { integrationId: "replay-open", to: "+15550009999", content: "single", idempotencyKey: "replay-open-single" };
    const firstSingle = await bed.clients.sms.sendSms(single);
    bed.gateway.on("/replay-open", { status: 500 });
    for (let i = 0; i < FAILURE_THRESHOLD; i++) {
      await rejectionOf(bed.send("replay-open"));
    }
    const sentBefore = bed.gateway.requestsTo("/replay-open").length;

    const reusedInBatch = { to: single.to, content: "another text", idempotencyKey: single.idempotencyKey };
    const repeated = await bed.clients.sms.sendSmsBatch({
      integrationId: "replay-open",
      messages: [...keyed, ...messages(1), reusedInBatch],
    });
    const repeatedSingle = await bed.clients.sms.sendSms(single);
    const reused = await rejectionOf(bed.clients.sms.sendSms({ ...single, content: "another text" }));

    expect(codesOf(first)).toEqual(Array(4).fill("OK"));
    expect(codesOf(repeated)).toEqual([...Array(4).fill("OK"), "UNAVAILABLE", "FAILED_PRECONDITION"]);
    expect(repeated.results.slice(0, 4).map((result) => sentOf(result).replayed)).toEqual(Array(4).fill(true));
    expect(repeated.results.slice(0, 4).map((result) => sentOf(result).id)).toEqual(first.results.map((result) => sentOf(result).id));
    expect(reasonOf(errorOf(repeated.results[4]))).toBe("CIRCUIT_OPEN");
    expect(reasonOf(errorOf(repeated.results[5]))).toBe("IDEMPOTENCY_KEY_REUSED");
    expect(detailsOf(errorOf(repeated.results[5]), ErrorInfoSchema)[0]?.metadata["field"]).toBe("messages[5].idempotency_key");
    expect(repeatedSingle).toMatchObject({ id: firstSingle.id, replayed: true });
    expect(reused.code).toBe(Code.FailedPrecondition);
    expect(errorInfoOf(reused).reason).toBe("IDEMPOTENCY_KEY_REUSED");
    expect(errorInfoOf(reused).metadata["field"]).toBe("idempotency_key");
    expect(bed.gateway.requestsTo("/replay-open")).toHaveLength(sentBefore);
  });

  test("replays pass a half-open circuit while its probe runs", { timeout: 10_000 }, async () => {
    bed.gateway.on("/replay-half", acceptedByRecipient);
    await bed.configure("replay-half", bed.gateway.url("/replay-half"));
    const keyed = messages(3).map((message, index) => ({ ...message, idempotencyKey: `replay-half-${index}` }));
    const first = await bed.clients.sms.sendSmsBatch({ integrationId: "replay-half", messages: keyed });
    bed.gateway.on("/replay-half", { status: 500 });
    for (let i = 0; i < FAILURE_THRESHOLD; i++) {
      await rejectionOf(bed.send("replay-half"));
    }
    await waitFor(() => bed.flowState("replay-half")?.circuit === "half_open", "the cool-down to end", OPEN_MS * 10);
    const probeRelease = deferred();
    bed.gateway.on("/replay-half", async (request) => {
      await probeRelease.promise;
      return acceptedByRecipient(request);
    });
    const probe = bed.send("replay-half");
    await waitFor(() => bed.gateway.requestsTo("/replay-half").length === 3 + FAILURE_THRESHOLD + 1, "the probe to reach the gateway");

    try {
      // Without a deadline, a message that waited for the probe would wait until the probe ends below.
      const repeated = await bed.clients.sms.sendSmsBatch({ integrationId: "replay-half", messages: keyed });

      expect(codesOf(repeated)).toEqual(Array(3).fill("OK"));
      expect(repeated.results.map((result) => sentOf(result).replayed)).toEqual(Array(3).fill(true));
      expect(repeated.results.map((result) => sentOf(result).id)).toEqual(first.results.map((result) => sentOf(result).id));
    } finally {
      probeRelease.resolve();
      await probe;
    }
  });

  test("a half-open circuit lets the batch wait for its probe", async () => {
    bed.gateway.on("/recovering", { status: 500 });
    await bed.configure("recovering", bed.gateway.url("/recovering"));
    for (let i = 0; i < FAILURE_THRESHOLD; i++) {
      await rejectionOf(bed.send("recovering"));
    }
    bed.gateway.on("/recovering", acceptedByRecipient);
    await waitFor(() => bed.flowState("recovering")?.circuit === "half_open", "the cool-down to end", OPEN_MS * 10);

    const response = await bed.clients.sms.sendSmsBatch({ integrationId: "recovering", messages: messages(5) });

    expect(codesOf(response)).toEqual(Array(5).fill("OK"));
    expect(bed.flowState("recovering")?.circuit).toBe("closed");
  });
});

describe("cancellation, deadline and shutdown", () => {
  /** Clients over HTTP/2: Connect and native gRPC. */
  const HTTP2_KINDS = CLIENT_KINDS.filter((kind) => kind.name.startsWith("Connect over HTTP/2") || kind.name.startsWith("grpc-js"));
  /** Recipient of the first message of {@link messages}. */
  const FIRST_RECIPIENT = "+1555000000";

  /**
   * Serves the path of a new integration id, made of `prefix` and the client
   * kind: the gateway accepts the first message and delays its reply to every other one.
   */
  function acceptFirstThenHang(prefix: string, kind: ClientKind): string {
    const id = `${prefix}-${kind.name.startsWith("grpc-js") ? "grpc" : "connect"}`;
    const hanging: ScriptedReply = { hang: true };
    bed.gateway.on(`/${id}`, (request: RecordedRequest) =>
      recipientOf(request) === FIRST_RECIPIENT ? acceptedByRecipient(request) : hanging,
    );
    return id;
  }

  test("a canceled batch starts no further message", async () => {
    const held = deferred();
    bed.gateway.on("/cancel", async () => {
      await held.promise;
      return ACCEPTED;
    });
    await bed.configure("cancel", bed.gateway.url("/cancel"), { maxConcurrentSends: SMALL_LIMIT });
    const controller = new AbortController();

    const call = bed.clients.sms.sendSmsBatch({ integrationId: "cancel", messages: messages(10) }, { signal: controller.signal });
    await waitFor(() => bed.gateway.requestsTo("/cancel").length === 2, "two messages to reach the gateway");
    controller.abort();
    await rejectionOf(call);
    await waitFor(() => batchLogLine("cancel") !== undefined, "the batch to finish");
    held.resolve();

    expect(batchLogLine("cancel")).toMatchObject({ succeeded: 0, failed: 10, failuresByCode: { CANCELLED: 10 } });
    expect(bed.gateway.requestsTo("/cancel")).toHaveLength(2);
    await waitFor(() => rpcLogLine(batchLogLine("cancel")?.requestId) !== undefined, "the call's log line");
    expect(rpcLogLine(batchLogLine("cancel")?.requestId)).toMatchObject({ procedure: "smsgateway.v1.SmsService/SendSmsBatch", code: "CANCELLED" });
  });

  test.each(HTTP2_KINDS)(
    "results arrive before the deadline over $name",
    async (kind) => {
      const id = acceptFirstThenHang("deadline", kind);
      await bed.configure(id, bed.gateway.url(`/${id}`), { maxConcurrentSends: 1 });
      const { client, close } = kind.create(SmsService, bed.service.baseUrl);

      try {
        const response = await client.sendSmsBatch({ integrationId: id, messages: messages(5) }, { timeoutMs: 2_000 });

        expect(codesOf(response)).toEqual(["OK", ...Array(4).fill("DEADLINE_EXCEEDED")]);
        expect(detailsOf(errorOf(response.results[1]), GatewayErrorSchema)[0]?.outcomeUnknown).toBe(true);
        // undici may end a request up to 0.5 s before its timeout, leaving time to start one more message.
        const reasons = response.results.slice(1).map((result) => reasonOf(errorOf(result)));
        const firstNotStarted = 1 + reasons.indexOf("MESSAGE_NOT_STARTED");
        expect(firstNotStarted).toBeGreaterThanOrEqual(2);
        expect(reasons.slice(firstNotStarted - 1)).toEqual(Array(5 - firstNotStarted).fill("MESSAGE_NOT_STARTED"));
        expect(bed.gateway.requestsTo(`/${id}`)).toHaveLength(firstNotStarted);
      } finally {
        close();
      }
    },
  );

  test("10,000 messages in a short deadline return their results", async () => {
    bed.gateway.on("/large-short", async (request) => {
      await sleep(300);
      return acceptedByRecipient(request);
    });
    await bed.configure("large-short", bed.gateway.url("/large-short"), { maxConcurrentSends: 64 });
    const kind = CLIENT_KINDS.find((candidate) => candidate.name === "Connect JSON over HTTP/1.1")!;
    const { client, close } = kind.create(SmsService, bed.service.baseUrl);

    try {
      // 10,000 messages keep back 2 s for the response, which covers the whole deadline. The client shares this
      // process and the CPU with the service. The deadline goes in the header alone, so the client's own encoding and
      // decoding of 10,000 messages do not count against it.
      const response = await client.sendSmsBatch(
        { integrationId: "large-short", messages: messages(10_000) },
        { headers: { "connect-timeout-ms": "1500" } },
      );

      expect(response.results).toHaveLength(10_000);
      expect(new Set(response.results.map((result) => reasonOf(errorOf(result))))).toEqual(new Set(["MESSAGE_NOT_STARTED"]));
      expect(bed.gateway.requestsTo("/large-short")).toHaveLength(0);
    } finally {
      close();
    }
  }, 20_000);

  /** A second service that the test may shut down, with integration `id` limited to one send in flight. */
  interface ClosingBed {
    service: TestService;
    clients: ServiceClients;
    /** Lets the gateway reply to the requests of `id`, which wait until then. */
    release(): void;
  }

  /** Runs `body` against a {@link ClosingBed}, and stops its service afterwards. */
  async function withClosingService(id: string, body: (closing: ClosingBed) => Promise<void>): Promise<void> {
    const service = await startTestService();
    const released = deferred();
    bed.gateway.on(`/${id}`, async (request) => {
      await released.promise;
      return acceptedByRecipient(request);
    });
    try {
      const clients = connectClients(service.baseUrl);
      const integration = integrationFor(id, bed.gateway.url(`/${id}`), { maxConcurrentSends: 1 });
      await clients.integrations.configureIntegration({ integration, allowMissing: true });
      await body({ service, clients, release: released.resolve });
    } finally {
      released.resolve();
      await service.stop();
    }
  }

  test("shutdown stops starting messages", async () => {
    await withClosingService("closing", async ({ service, clients, release }) => {
      const call = clients.sms.sendSmsBatch({ integrationId: "closing", messages: messages(4) });
      await waitFor(() => bed.gateway.requestsTo("/closing").length === 1, "the first message to reach the gateway");

      const closed = service.app.close(10_000);
      release();
      const response = await call;
      await closed;

      expect(codesOf(response)).toEqual(["OK", "UNAVAILABLE", "UNAVAILABLE", "UNAVAILABLE"]);
      for (const result of response.results.slice(1)) {
        expect(reasonOf(errorOf(result))).toBe("MESSAGE_NOT_STARTED");
        expect(errorOf(result).message).toContain("the service began to shut down");
      }
      expect(bed.gateway.requestsTo("/closing")).toHaveLength(1);
    });
  });

  test.each(HTTP2_KINDS)(
    "the end of grace leaves unstarted messages UNAVAILABLE over $name",
    async (kind) => {
      const id = acceptFirstThenHang("grace", kind);
      // One message at a time, so the third is still waiting when the grace period ends.
      const service = await startTestService({ batchConcurrency: 1 });
      const { client, close } = kind.create(SmsService, service.baseUrl);

      try {
        await connectClients(service.baseUrl).integrations.configureIntegration({
          integration: integrationFor(id, bed.gateway.url(`/${id}`)),
          allowMissing: true,
        });
        const call = client.sendSmsBatch({ integrationId: id, messages: messages(3) });
        await waitFor(() => bed.gateway.requestsTo(`/${id}`).length === 2, "the second message to reach the gateway");

        const closed = service.app.close(300);
        const response = await call;
        await closed;

        expect(codesOf(response)).toEqual(["OK", "CANCELLED", "UNAVAILABLE"]);
        expect(sentOf(response.results[0]).id).toBe(`id-${FIRST_RECIPIENT}`);
        expect(detailsOf(errorOf(response.results[1]), GatewayErrorSchema)[0]?.outcomeUnknown).toBe(true);
        expect(errorOf(response.results[1]).message).toMatch(/^The service was shutting down and cut the SMS request /);
        expect(reasonOf(errorOf(response.results[2]))).toBe("MESSAGE_NOT_STARTED");
        expect(errorOf(response.results[2]).message).toContain("the service began to shut down");
        expect(bed.gateway.requestsTo(`/${id}`)).toHaveLength(2);
      } finally {
        close();
        await service.stop();
      }
    },
  );

  test("shutdown ends the wait for a slot", async () => {
    await withClosingService("closing-wait", async ({ service, clients, release }) => {
      const single = clients.sms.sendSms({ integrationId: "closing-wait", to: "+15559000000", content: "holds the slot" });
      await waitFor(() => bed.gateway.requestsTo("/closing-wait").length === 1, "the single send to reach the gateway");
      const call = clients.sms.sendSmsBatch({ integrationId: "closing-wait", messages: messages(3) });
      const waiting = () => service.app.sendGate.flowStates().find((state) => state.integrationId === "closing-wait")?.waiting;
      await waitFor(() => waiting() === 1, "a message to wait for the slot");

      const closed = service.app.close(10_000);
      const response = await call;
      release();
      await single;
      await closed;

      expect(codesOf(response)).toEqual(Array(3).fill("UNAVAILABLE"));
      for (const result of response.results) {
        expect(reasonOf(errorOf(result))).toBe("MESSAGE_NOT_STARTED");
        expect(errorOf(result).message).toContain("the service began to shut down");
      }
      expect(bed.gateway.requestsTo("/closing-wait")).toHaveLength(1);
    });
  });
});
