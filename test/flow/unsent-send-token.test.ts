// A send that stops before its first SMS request gives its rate-limit token back, so that it
// costs the integration's max_sends_per_second nothing. The gate's clock does not move in these
// tests, so no token refills and each token can be counted by the sends it lets through.
import { create } from "@bufbuild/protobuf";
import { afterEach, beforeEach, expect, test } from "vitest";

import { SendSmsBatchRequestSchema, SendSmsRequestSchema } from "../../gen/smsgateway/v1/sms_service_pb.js";
import { FlowLimitError, GatewayError } from "../../src/errors.js";
import { acceptedByRecipient, codesOf, messages, recipientOf } from "../batch/batch-fixtures.js";
import { openSmsServiceBed, type SmsServiceBed } from "../services/sms-service-bed.js";
import { deferred, waitFor } from "./flow-fixtures.js";

/** Recipients of the first two messages of {@link messages}. */
const FIRST = "+1555000000";
const SECOND = "+1555000001";

/** Recipient of the SendSms calls that count the tokens left. */
const PROBE = "+1555999999";

/** The send gate's clock in milliseconds, moved only by the tests. */
const gateClock = { nowMs: 0 };

let bed: SmsServiceBed;

beforeEach(async () => {
  gateClock.nowMs = 0;
  bed = await openSmsServiceBed({ batchConcurrency: 2, sendMaxAttempts: 1, retryAfterMaxMs: 3_000, gateNow: () => gateClock.nowMs });
});

afterEach(async () => {
  await bed.close();
});

/** Returns the sends of the integration in flight, as the send gate counts them. */
function inFlight(integrationId: string): number | undefined {
  return bed.gate.flowStates().find((state) => state.integrationId === integrationId)?.inFlight;
}

/** Sends one SMS to {@link PROBE} without an idempotency key, which takes a token if one is left. */
function probe(integrationId: string) {
  return bed.sms.sendSms(create(SendSmsRequestSchema, { integrationId, to: PROBE, content: "probe" }), bed.context({ timeoutMs: 10_000 }));
}

/** Resolves when `call` fails with the gate's rate-limit rejection, and fails the test otherwise. */
async function expectRateLimited(call: Promise<unknown>): Promise<void> {
  const error = await call.then(
    () => new Error("expected the gate to reject the send for its rate limit"),
    (reason: unknown) => reason,
  );
  expect(error).toBeInstanceOf(FlowLimitError);
  expect((error as FlowLimitError).info.reason).toBe("RATE_LIMITED");
}

test("paused batch message gives its token back", async () => {
  // Two tokens, one for each message of the batch.
  await bed.configure("paused", { maxSendsPerSecond: 2 });
  const claimStarted = deferred();
  const releaseClaim = deferred();
  let limited = false;
  bed.gateway.on("/paused", async (request) => {
    if (recipientOf(request) === FIRST) {
      await claimStarted.promise;
      limited = true;
      return { status: 429, headers: { "retry-after": "1" } };
    }
    return acceptedByRecipient(request);
  });
  // Message 1 has its token and is in its key claim when message 0's 429 pauses the batch.
  bed.keys.afterClaim = async (claim) => {
    if (claim.key === "paused-1" && !limited) {
      claimStarted.resolve();
      await releaseClaim.promise;
    }
  };
  const batch = [messages(1)[0]!, { ...messages(2)[1]!, idempotencyKey: "paused-1" }];

  const call = bed.sms.sendSmsBatch(create(SendSmsBatchRequestSchema, { integrationId: "paused", messages: batch }), bed.context({ timeoutMs: 10_000 }));
  await waitFor(() => limited && inFlight("paused") === 1, "the 429 to pause the batch");
  releaseClaim.resolve();
  await waitFor(() => inFlight("paused") === 0, "message 1 to stop before its request");

  // Message 0's request reached the gateway, so only message 1's token is back: one send passes.
  await expect(probe("paused")).resolves.toMatchObject({ id: `id-${PROBE}` });
  await expectRateLimited(probe("paused"));

  gateClock.nowMs += 1_000;
  const response = await call;

  expect(codesOf(response)).toEqual(["RESOURCE_EXHAUSTED", "OK"]);
  expect(bed.gateway.requestsTo("/paused").map(recipientOf)).toEqual([FIRST, PROBE, SECOND]);
});

test("send canceled before its request gives its token back", async () => {
  await bed.configure("canceled", { maxSendsPerSecond: 1 });
  bed.gateway.on("/canceled", acceptedByRecipient);
  const claimed = deferred();
  const releaseClaim = deferred();
  bed.keys.afterClaim = async () => {
    claimed.resolve();
    await releaseClaim.promise;
  };
  const caller = new AbortController();
  const request = create(SendSmsRequestSchema, { integrationId: "canceled", to: FIRST, content: "canceled", idempotencyKey: "canceled-1" });

  // The send took the only token and is in its key claim when its caller cancels.
  const call = bed.sms.sendSms(request, bed.context({ timeoutMs: 10_000, signal: caller.signal }));
  await claimed.promise;
  caller.abort();
  releaseClaim.resolve();
  const error = await call.then(
    () => new Error("expected the canceled send to fail"),
    (reason: unknown) => reason,
  );
  bed.keys.afterClaim = undefined;

  expect(error).toBeInstanceOf(GatewayError);
  expect((error as GatewayError).info.failure).toBe("canceled");
  expect((error as GatewayError).info.attempts).toBe(0);
  await expect(probe("canceled")).resolves.toMatchObject({ id: `id-${PROBE}` });
  await expectRateLimited(probe("canceled"));
  expect(bed.gateway.requestsTo("/canceled").map(recipientOf)).toEqual([PROBE]);
});

test("failed request keeps its token", async () => {
  await bed.configure("failed", { maxSendsPerSecond: 1 });
  bed.gateway.on("/failed", () => ({ status: 503 }));

  await expect(probe("failed")).rejects.toBeInstanceOf(GatewayError);

  await expectRateLimited(probe("failed"));
  expect(bed.gateway.requestsTo("/failed")).toHaveLength(1);
});
