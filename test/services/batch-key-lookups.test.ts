// How often a batch message reads its idempotency key's kept outcome while flow control keeps it
// back, and that the kept outcomes of keys sent before still reach the batch's results.
import { create } from "@bufbuild/protobuf";
import { afterEach, beforeEach, describe, expect, test } from "vitest";

import { SendSmsBatchRequestSchema, type SendSmsBatchResponse } from "../../gen/smsgateway/v1/sms_service_pb.js";
import {
  acceptedByRecipient,
  codesOf,
  errorOf,
  messages,
  reasonOf,
  recipientOf,
  sentOf,
  type BatchMessageInit,
} from "../batch/batch-fixtures.js";
import { deferred, sleep, waitFor } from "../flow/flow-fixtures.js";
import { openSmsServiceBed, type SmsServiceBed } from "./sms-service-bed.js";

let bed: SmsServiceBed;

afterEach(async () => {
  await bed.close();
});

/** Returns `count` messages with the keys `<prefix>-0`, `<prefix>-1`, ... */
function keyedMessages(prefix: string, count: number): BatchMessageInit[] {
  return messages(count).map((message, index) => ({ ...message, idempotencyKey: `${prefix}-${index}` }));
}

/** Sends a batch through the bed's SmsService, as the RPC handler would. */
function sendBatch(integrationId: string, batch: BatchMessageInit[], timeoutMs?: number): Promise<SendSmsBatchResponse> {
  const request = create(SendSmsBatchRequestSchema, { integrationId, messages: batch });
  return bed.sms.sendSmsBatch(request, bed.context({ timeoutMs }));
}

/** Sends `message` through the replica's Delivery, which shares the database but not the flow control. */
async function sendThroughReplica(integrationId: string, message: BatchMessageInit): Promise<string> {
  const integration = (await bed.integrations.get(integrationId))!;
  const result = await bed.replica.send(integration, message);
  return result.id;
}

/** Sends a request that fails with 500, so that a circuit with a threshold of 1 opens. */
async function openCircuit(integrationId: string): Promise<void> {
  const failing = create(SendSmsBatchRequestSchema, { integrationId, messages: [{ to: "+15559990000", content: "fails" }] });
  const response = await bed.sms.sendSmsBatch(failing, bed.context());
  expect(codesOf(response)).toEqual(["UNAVAILABLE"]);
}

describe("lookups of a rate-limited batch", () => {
  beforeEach(async () => {
    bed = await openSmsServiceBed({ batchConcurrency: 4 });
  });

  test("each key is read at most once", async () => {
    bed.gateway.on("/paced", acceptedByRecipient);
    await bed.configure("paced", { maxSendsPerSecond: 5 });

    const response = await sendBatch("paced", keyedMessages("paced", 10), 30_000);

    expect(codesOf(response)).toEqual(Array(10).fill("OK"));
    // The burst of 5 goes out at once, so only the other 5 meet a rejection, each at least once.
    expect(bed.keys.maxReadsOfOneKey).toBe(1);
    expect(bed.keys.totalReads).toBeLessThanOrEqual(5);
  });

  test("a halted batch reads a rejected key once", async () => {
    bed.gateway.on("/halted", async () => {
      await sleep(100);
      return { status: 429, headers: { "retry-after": "60" } };
    });
    await bed.configure("halted", { maxSendsPerSecond: 1 });

    // Message 0 takes the only token and gets a Retry-After longer than RETRY_AFTER_MAX_MS, while message 1 waits for a token.
    const response = await sendBatch("halted", [messages(1)[0]!, keyedMessages("halted", 2)[1]!], 10_000);

    expect(codesOf(response)).toEqual(["RESOURCE_EXHAUSTED", "RESOURCE_EXHAUSTED"]);
    expect(reasonOf(errorOf(response.results[1]))).toBe("MESSAGE_NOT_STARTED");
    expect(bed.keys.reads.get("halted-1")).toBe(1);
  });

  test("kept outcomes of keys sent before survive a slow message", async () => {
    bed.gateway.on("/slow", acceptedByRecipient);
    // One token every 2 s: a message rejected after the first one cannot wait for the next within the deadline.
    await bed.configure("slow", { maxSendsPerSecond: 0.5 });
    const keyed = keyedMessages("slow", 4);
    const sentIds: string[] = [];
    for (const message of keyed.slice(1)) {
      sentIds.push(await sendThroughReplica("slow", message));
    }
    const sentBefore = bed.gateway.requestsTo("/slow").length;
    // Message 0 takes the only token, and the claim of its key keeps the batch busy past its end.
    bed.keys.afterClaim = async (claim) => {
      if (claim.key === "slow-0") {
        await sleep(850);
      }
    };

    const response = await sendBatch("slow", keyed, 900);

    expect(codesOf(response).slice(1)).toEqual(["OK", "OK", "OK"]);
    expect(response.results.slice(1).map((result) => sentOf(result).replayed)).toEqual([true, true, true]);
    expect(response.results.slice(1).map((result) => sentOf(result).id)).toEqual(sentIds);
    expect(bed.gateway.requestsTo("/slow")).toHaveLength(sentBefore);
  });

  test("kept outcomes survive a shutdown during the rate wait", async () => {
    bed.gateway.on("/closing", acceptedByRecipient);
    await bed.configure("closing", { maxSendsPerSecond: 1 });
    const keyed = keyedMessages("closing", 4);
    const sentIds = [await sendThroughReplica("closing", keyed[1]!), await sendThroughReplica("closing", keyed[2]!)];

    // Message 0 takes the only token, messages 1 and 2 were sent before, and message 3 waits for a token.
    const call = sendBatch("closing", keyed);
    await waitFor(() => bed.gateway.requestsTo("/closing").length === 3, "message 0 to reach the gateway");
    await sleep(100);
    bed.stopping.abort();
    const response = await call;

    expect(codesOf(response)).toEqual(["OK", "OK", "OK", "UNAVAILABLE"]);
    expect(response.results.slice(1, 3).map((result) => sentOf(result).id)).toEqual(sentIds);
    expect(response.results.slice(1, 3).map((result) => sentOf(result).replayed)).toEqual([true, true]);
    expect(reasonOf(errorOf(response.results[3]))).toBe("MESSAGE_NOT_STARTED");
    expect(errorOf(response.results[3]).message).toContain("the service began to shut down");
  });

  test("a key sent by a replica after the lookup is not sent again", async () => {
    bed.gateway.on("/late", acceptedByRecipient);
    await bed.configure("late", { maxSendsPerSecond: 1 });
    const keyed = keyedMessages("late", 2);

    // Message 0 takes the only token. Message 1 finds no kept outcome, and waits about 1 s for a token.
    const call = sendBatch("late", keyed, 10_000);
    await waitFor(() => bed.keys.reads.has("late-1"), "message 1 to be rejected for rate");
    const replicaId = await sendThroughReplica("late", keyed[1]!);
    const response = await call;

    expect(codesOf(response)).toEqual(["OK", "OK"]);
    // Message 1's claim found the replica's send, so it reports that send and makes no request.
    expect(sentOf(response.results[1])).toMatchObject({ id: replicaId, replayed: true });
    expect(bed.gateway.requestsTo("/late").map(recipientOf)).toEqual(["+1555000000", "+1555000001"]);
  });
});

describe("lookups past a half-open circuit", () => {
  const OPEN_MS = 200;

  beforeEach(async () => {
    bed = await openSmsServiceBed({ batchConcurrency: 4, circuitFailureThreshold: 1, circuitOpenMs: OPEN_MS });
  });

  test("each key is read once while the probe runs", async () => {
    await bed.configure("probed");
    bed.gateway.on("/probed", { status: 500 });
    await openCircuit("probed");
    await sleep(OPEN_MS + 50);
    const releaseProbe = deferred();
    bed.gateway.on("/probed", async (request) => {
      if (recipientOf(request) === "+15559990001") {
        await releaseProbe.promise;
      }
      return acceptedByRecipient(request);
    });
    const probe = bed.sms.sendSmsBatch(
      create(SendSmsBatchRequestSchema, { integrationId: "probed", messages: [{ to: "+15559990001", content: "probe" }] }),
      bed.context(),
    );
    await waitFor(() => bed.gateway.requestsTo("/probed").length === 2, "the probe to reach the gateway");

    // The batch's messages wait for the probe at a short retry delay, about 10 ms.
    const call = sendBatch("probed", keyedMessages("probed", 3), 10_000);
    await sleep(500);
    releaseProbe.resolve();
    const response = await call;
    await probe;

    expect(codesOf(response)).toEqual(Array(3).fill("OK"));
    expect(bed.keys.maxReadsOfOneKey).toBe(1);
    expect(bed.keys.totalReads).toBe(3);
  });

  test("a key a replica claimed is read again", async () => {
    await bed.configure("claimed");
    bed.gateway.on("/claimed", { status: 500 });
    await openCircuit("claimed");
    await sleep(OPEN_MS + 50);
    const releaseProbe = deferred();
    const releaseReplica = deferred();
    bed.gateway.on("/claimed", async (request) => {
      if (recipientOf(request) === "+15559990001") {
        await releaseProbe.promise;
        return { status: 500 };
      }
      await releaseReplica.promise;
      return acceptedByRecipient(request);
    });
    const probe = bed.sms.sendSmsBatch(
      create(SendSmsBatchRequestSchema, { integrationId: "claimed", messages: [{ to: "+15559990001", content: "probe" }] }),
      bed.context(),
    );
    await waitFor(() => bed.gateway.requestsTo("/claimed").length === 2, "the probe to reach the gateway");
    const [message] = keyedMessages("claimed", 1);
    const replicaSend = sendThroughReplica("claimed", message!);
    await waitFor(() => bed.gateway.requestsTo("/claimed").length === 3, "the replica's send to reach the gateway");

    // The batch's message finds its key claimed by the replica's send, and waits for the probe.
    const call = sendBatch("claimed", [message!], 10_000);
    await waitFor(() => bed.keys.reads.has("claimed-0"), "the message to look up its key");
    releaseReplica.resolve();
    const replicaId = await replicaSend;
    // A message that read its key again after the replica's send ended has returned its outcome by now.
    await sleep(300);
    // The probe fails, so the circuit opens again and rejects a message that did not read its key again.
    releaseProbe.resolve();
    const response = await call;
    await probe;

    expect(codesOf(response)).toEqual(["OK"]);
    expect(sentOf(response.results[0])).toMatchObject({ id: replicaId, replayed: true });
    expect(bed.gateway.requestsTo("/claimed")).toHaveLength(3);
  });
});
