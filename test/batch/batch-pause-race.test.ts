// A batch message that passed the pause check and then waited for the database while another
// message's 429 with Retry-After paused the batch: it must not send before the pause ends.
import { performance } from "node:perf_hooks";

import { create } from "@bufbuild/protobuf";
import { afterEach, beforeEach, expect, test } from "vitest";

import { SendSmsBatchRequestSchema } from "../../gen/smsgateway/v1/sms_service_pb.js";
import { deferred, waitFor } from "../flow/flow-fixtures.js";
import { openSmsServiceBed, type SmsServiceBed } from "../services/sms-service-bed.js";
import { acceptedByRecipient, codesOf, messages, recipientOf, type BatchMessageInit } from "./batch-fixtures.js";

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
