// A batch message that passed the pause check and then waited for the database while another
// message's 429 with Retry-After paused the batch: it must not send before the pause ends. A
// concurrent SendSms that waits for the paused message's idempotency key sends instead of it, once.
import { performance } from "node:perf_hooks";

import { create } from "@bufbuild/protobuf";
import { afterEach, beforeEach, expect, test } from "vitest";

import { SendSmsBatchRequestSchema, SendSmsRequestSchema } from "../../gen/smsgateway/v1/sms_service_pb.js";
import { deferred, waitFor } from "../flow/flow-fixtures.js";
import { openSmsServiceBed, type SmsServiceBed } from "../services/sms-service-bed.js";
import { acceptedByRecipient, codesOf, messages, recipientOf, sentOf, type BatchMessageInit } from "./batch-fixtures.js";

/** Recipients of the first two messages of {@link messages}. */
const FIRST = "+1555000000";
const SECOND = "+1555000001";

let bed: SmsServiceBed;

beforeEach(async () => {
  // One attempt per message, so that the 429 is the first message's result at once.
  bed = await openSmsServiceBed({ batchConcurrency: 2, sendMaxAttempts: 1, retryAfterMaxMs: 3_000 });
});

afterEach(async () => {
  await bed.close();
});

/**
 * Serves `/<integrationId>`: the first message's request waits for
 * `replyAllowed`, then gets 429 with `Retry-After: 1`. Every other request
 * is accepted. Returns the clock times of the 429 and of the second
 * message's first request.
 */
function pausingGateway(integrationId: string, replyAllowed: Promise<void>): { limitedAt?: number; secondAt?: number } {
  const times: { limitedAt?: number; secondAt?: number } = {};
  bed.gateway.on(`/${integrationId}`, async (request) => {
    if (recipientOf(request) === FIRST) {
      await replyAllowed;
      times.limitedAt = performance.now();
      return { status: 429, headers: { "retry-after": "1" } };
    }
    times.secondAt ??= performance.now();
    return acceptedByRecipient(request);
  });
  return times;
}

/** Returns the sends of the integration in flight, as the send gate counts them. */
function inFlight(integrationId: string): number | undefined {
  return bed.gate.flowStates().find((state) => state.integrationId === integrationId)?.inFlight;
}

function sendBatch(integrationId: string, batch: BatchMessageInit[]) {
  return bed.sms.sendSmsBatch(create(SendSmsBatchRequestSchema, { integrationId, messages: batch }), bed.context({ timeoutMs: 10_000 }));
}

test("message in its key claim waits out a pause", async () => {
  await bed.configure("claim-race");
  const claimStarted = deferred();
  const releaseClaim = deferred();
  const times = pausingGateway("claim-race", claimStarted.promise);
  let claims = 0;
  bed.keys.afterClaim = async (claim) => {
    claims += 1;
    if (claim.key === "claim-race-1" && claims === 1) {
      claimStarted.resolve();
      await releaseClaim.promise;
    }
  };
  const batch = [messages(1)[0]!, { ...messages(2)[1]!, idempotencyKey: "claim-race-1" }];

  // Message 1 passed the pause check and is in its claim when message 0's 429 arrives.
  const call = sendBatch("claim-race", batch);
  await waitFor(() => times.limitedAt !== undefined && inFlight("claim-race") === 1, "the 429 to pause the batch");
  releaseClaim.resolve();
  const response = await call;

  expect(codesOf(response)).toEqual(["RESOURCE_EXHAUSTED", "OK"]);
  expect(bed.gateway.requestsTo("/claim-race").map(recipientOf)).toEqual([FIRST, SECOND]);
  // The pause began after the 429 left the gateway, and lasts 1 s (less the clock's millisecond).
  expect(times.secondAt! - times.limitedAt!).toBeGreaterThanOrEqual(999);
});

test("message in its integration read waits out a pause", async () => {
  await bed.configure("read-race");
  const readStarted = deferred();
  const releaseRead = deferred();
  const times = pausingGateway("read-race", readStarted.promise);
  // Reads of the integration, in order: the call's own, message 0's, then message 1's.
  let reads = 0;
  bed.integrationReadHook = async () => {
    reads += 1;
    if (reads === 3) {
      readStarted.resolve();
      await releaseRead.promise;
    }
  };

  // Message 1 passed the pause check and is in its integration read when message 0's 429 arrives.
  const call = sendBatch("read-race", messages(2));
  await waitFor(() => times.limitedAt !== undefined && inFlight("read-race") === 0, "the 429 to pause the batch");
  releaseRead.resolve();
  const response = await call;

  expect(codesOf(response)).toEqual(["RESOURCE_EXHAUSTED", "OK"]);
  expect(bed.gateway.requestsTo("/read-race").map(recipientOf)).toEqual([FIRST, SECOND]);
  expect(times.secondAt! - times.limitedAt!).toBeGreaterThanOrEqual(999);
});

/**
 * Starts a batch of two messages to `integrationId`: message 0 gets the
 * 429, and the claim of message 1, with idempotency key `key`, does not
 * return until the 429 paused the batch. Then starts a SendSms of message 1 with the
 * same key, which waits for that claim, and lets the claim return. Returns
 * both calls.
 */
async function pauseWithWaitingDuplicate(integrationId: string, key: string) {
  const claimStarted = deferred();
  const releaseClaim = deferred();
  const times = pausingGateway(integrationId, claimStarted.promise);
  let firstOwner: string | undefined;
  const previousHook = bed.keys.afterClaim;
  bed.keys.afterClaim = async (claim) => {
    await previousHook?.(claim);
    if (firstOwner === undefined) {
      firstOwner = claim.owner;
      claimStarted.resolve();
      await releaseClaim.promise;
    }
  };
  const keyed = { ...messages(2)[1]!, idempotencyKey: key };

  const batch = sendBatch(integrationId, [messages(1)[0]!, keyed]);
  await waitFor(() => times.limitedAt !== undefined && inFlight(integrationId) === 1, "the 429 to pause the batch");
  const single = bed.sms.sendSms(create(SendSmsRequestSchema, { integrationId, ...keyed }), bed.context({ timeoutMs: 10_000 }));
  await waitFor(() => (bed.keys.reads.get(key) ?? 0) >= 1, "the SendSms to find the key claimed");
  releaseClaim.resolve();
  return { batch, single };
}

test("duplicate waiting on a paused message sends", async () => {
  await bed.configure("waiter-sends");

  const { batch, single } = await pauseWithWaitingDuplicate("waiter-sends", "waiter-sends-1");
  const [sent, response] = await Promise.all([single, batch]);

  expect(sent.id).toBe(`id-${SECOND}`);
  expect(sent.replayed).toBe(false);
  expect(codesOf(response)).toEqual(["RESOURCE_EXHAUSTED", "OK"]);
  // The paused message claims the key again after the pause, and gets the SendSms's outcome.
  expect(sentOf(response.results[1]).id).toBe(`id-${SECOND}`);
  expect(sentOf(response.results[1]).replayed).toBe(true);
  expect(bed.gateway.requestsTo("/waiter-sends").map(recipientOf)).toEqual([FIRST, SECOND]);
});

test("paused message that claims first sends once", async () => {
  await bed.configure("resumed-sends");
  const resumedClaimed = deferred();
  // Owners of the key's claims, in order: the batch message, then the SendSms, whose first claim
  // fails. The SendSms's claim after the pause waits before the database until the batch
  // message, resumed after the pause, has claimed the key again.
  const owners: string[] = [];
  bed.keys.beforeClaim = async (claim) => {
    const again = owners.length >= 2 && claim.owner === owners[1];
    owners.push(claim.owner);
    if (again) {
      await resumedClaimed.promise;
    }
  };
  bed.keys.afterClaim = async (claim) => {
    if (owners.length >= 3 && claim.owner !== owners[0] && claim.owner !== owners[1]) {
      resumedClaimed.resolve();
    }
  };

  const { batch, single } = await pauseWithWaitingDuplicate("resumed-sends", "resumed-sends-1");
  const [response, sent] = await Promise.all([batch, single]);

  expect(owners).toHaveLength(4);
  // The SendSms claimed again before the batch message did, and that claim failed.
  expect(owners[2]).toBe(owners[1]);
  expect(codesOf(response)).toEqual(["RESOURCE_EXHAUSTED", "OK"]);
  expect(sentOf(response.results[1]).id).toBe(`id-${SECOND}`);
  expect(sentOf(response.results[1]).replayed).toBe(false);
  expect(sent.id).toBe(`id-${SECOND}`);
  expect(sent.replayed).toBe(true);
  expect(bed.gateway.requestsTo("/resumed-sends").map(recipientOf)).toEqual([FIRST, SECOND]);
});
