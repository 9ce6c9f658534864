import pino from "pino";
import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { IdempotencyKeys } from "../../src/delivery/idempotency-keys.js";
import { requestHash } from "../../src/delivery/request-hash.js";
import { SendDeadline } from "../../src/dispatch/send-deadline.js";
import type { SmsMessage } from "../../src/dispatch/dispatcher.js";
import { GatewayError, GraceEndedError, StoppedBeforeRequestError } from "../../src/errors.js";
import { gatewayErrorOf, invalidArgumentOf } from "../dispatch/fixtures.js";
import {
  assertPostgresReachable,
  dropSchema,
  SKIP_POSTGRES,
  TEST_DATABASE_URL,
  uniqueSchemaName,
} from "../store/postgres-test-database.js";
import { accepted, delayed, idempotencyErrorOf, inOrder, setUpDeliveryTests, type Harness, type HarnessOptions } from "./fixtures.js";

const message: SmsMessage = { to: "+15551234567", content: "Your code is 123456", idempotencyKey: "order-42" };

/** A stop before the first request, as a caller of Delivery defines one. */
class StoppedForTestError extends StoppedBeforeRequestError {}

const env = setUpDeliveryTests();
const harness = (options: Partial<HarnessOptions> = {}) => env.harness(options);

describe("Delivery with an idempotency key", () => {
  test("sends the key in the Idempotency-Key header", async () => {
    env.gateway.on("/sms", accepted());
    const { delivery, integration } = await harness();

    await delivery.send(integration, message);

    expect(env.gateway.requestsTo("/sms")[0]?.headers["idempotency-key"]).toBe("order-42");
  });

  test("sends no Idempotency-Key header without a key", async () => {
    env.gateway.on("/sms", accepted());
    const { delivery, integration } = await harness();

    await delivery.send(integration, { to: message.to, content: message.content });

    expect(env.gateway.requestsTo("/sms")[0]?.headers["idempotency-key"]).toBeUndefined();
  });

  test("rejects a passthrough Idempotency-Key header next to a key", async () => {
    const { delivery, integration, idempotency } = await harness();

    const error = await invalidArgumentOf(
      delivery.send(integration, { ...message, passthrough: { headers: { "idempotency-key": "other" } } }),
    );

    expect(error.violations[0]?.field).toBe('passthrough.headers["idempotency-key"]');
    expect(env.gateway.requests).toHaveLength(0);
    expect(await idempotency.get("acme", "order-42")).toBeNull();
  });

  test("replays a success without a second request", async () => {
    env.gateway.on("/sms", inOrder({ status: 503 }, accepted("m-first"), accepted("m-second")));
    const { delivery, integration } = await harness();

    const first = await delivery.send(integration, message);
    const second = await delivery.send(integration, message);

    expect(first).toMatchObject({ id: "m-first", attempts: 2, replayed: false });
    expect(second).toEqual({ ...first, replayed: true });
    expect(env.gateway.requestsTo("/sms")).toHaveLength(2);
  });

  test("marks a replayed final failure", async () => {
    env.gateway.on("/sms", inOrder({ status: 400, json: { error: "invalid number" } }, accepted()));
    const { delivery, integration } = await harness();

    const first = await gatewayErrorOf(delivery.send(integration, message));
    const second = await gatewayErrorOf(delivery.send(integration, message));

    expect(first.info).toMatchObject({ failure: "rejected", httpStatus: 400, bodyExcerpt: '{"error":"invalid number"}' });
    expect(first.replayed).toBe(false);
    expect(first.message).not.toContain("idempotency key");
    expect(second.replayed).toBe(true);
    expect(second.message).toMatch(/^This call sent nothing and returns the stored outcome of an earlier call with the same idempotency key\. /);
    expect(second.message).toContain("a new key is needed to send again");
    expect(second.message.endsWith(` The earlier call failed with: ${first.message}`)).toBe(true);
    expect(second.info).toEqual(first.info);
    expect(env.gateway.requestsTo("/sms")).toHaveLength(1);
  });

  test("sends again after a failure that a retry may fix", async () => {
    env.gateway.on("/sms", inOrder({ status: 503 }, { status: 503 }, { status: 503 }, accepted("m-later")));
    const { delivery, integration } = await harness();

    const first = await gatewayErrorOf(delivery.send(integration, message));
    const second = await delivery.send(integration, message);

    expect(first.info).toMatchObject({ httpStatus: 503, attempts: 3 });
    expect(second).toMatchObject({ id: "m-later", replayed: false });
    expect(env.gateway.requestsTo("/sms")).toHaveLength(4);
  });

  test("sends again after a 408", async () => {
    env.gateway.on("/sms", inOrder({ status: 408 }, accepted("m-after-408")));
    const { delivery, integration, idempotency } = await harness({ settings: { maxAttempts: 1 } });

    const first = await gatewayErrorOf(delivery.send(integration, message));
    const state = (await idempotency.get("acme", "order-42"))?.state;
    const second = await delivery.send(integration, message);

    expect(first.info).toMatchObject({ failure: "unavailable", httpStatus: 408 });
    expect(state).toBe("retryable");
    expect(second).toMatchObject({ id: "m-after-408", replayed: false });
    expect(env.gateway.requestsTo("/sms")).toHaveLength(2);
  });

  const otherRequests: Array<[string, SmsMessage]> = [
    ["another recipient", { ...message, to: "+15557654321" }],
    ["other content", { ...message, content: "Your code is 654321" }],
    ["a sender", { ...message, sender: "Other" }],
    ["a passthrough body", { ...message, passthrough: { body: { priority: "high" } } }],
    ["a passthrough query", { ...message, passthrough: { query: { route: "2" } } }],
  ];

  test.each(otherRequests)("rejects the key reused with %s", async (_name, other) => {
    env.gateway.on("/sms", accepted());
    const { delivery, integration } = await harness();
    await delivery.send(integration, message);

    const error = await idempotencyErrorOf(delivery.send(integration, other), "key_reused");

    expect(error.message).toContain('idempotency_key: key "order-42" was already used for a different request');
    expect(env.gateway.requestsTo("/sms")).toHaveLength(1);
  });

  test("treats an empty passthrough like none", async () => {
    env.gateway.on("/sms", accepted());
    const { delivery, integration } = await harness();
    await delivery.send(integration, message);

    const repeat = await delivery.send(integration, { ...message, passthrough: { body: {}, headers: {}, query: {} } });

    expect(repeat.replayed).toBe(true);
  });

  test("scopes keys per integration", async () => {
    env.gateway.on("/sms", inOrder(accepted("m-acme"), accepted("m-other")));
    const { delivery, integration, store } = await harness();
    const other = await store.create({ ...integration, displayName: "Other" }, "other");

    const first = await delivery.send(integration, message);
    const second = await delivery.send(other, message);

    expect(first.id).toBe("m-acme");
    expect(second).toMatchObject({ id: "m-other", replayed: false });
  });

  test("sends once for ten concurrent duplicates", async () => {
    env.gateway.on("/sms", delayed(200, accepted("m-once")));
    const { delivery, integration } = await harness();

    const results = await Promise.all(Array.from({ length: 10 }, () => delivery.send(integration, message)));

    expect(env.gateway.requestsTo("/sms")).toHaveLength(1);
    expect(results.map((result) => result.id)).toEqual(Array(10).fill("m-once"));
    expect(results.filter((result) => !result.replayed)).toHaveLength(1);
  });

  test("gives concurrent duplicates the failure they waited for", async () => {
    env.gateway.on("/sms", delayed(200, { status: 503 }));
    const { delivery, integration } = await harness({ settings: { maxAttempts: 1 } });

    const outcomes = await Promise.allSettled(Array.from({ length: 5 }, () => delivery.send(integration, message)));

    expect(env.gateway.requestsTo("/sms")).toHaveLength(1);
    for (const outcome of outcomes) {
      expect(outcome.status).toBe("rejected");
      const reason = (outcome as PromiseRejectedResult).reason as GatewayError;
      expect(reason).toBeInstanceOf(GatewayError);
      expect(reason.info.httpStatus).toBe(503);
    }
    const errors = outcomes.map((outcome) => (outcome as PromiseRejectedResult).reason as GatewayError);
    const waited = errors.filter((error) => error.replayed);
    expect(waited).toHaveLength(4);
    for (const error of waited) {
      expect(error.message).toMatch(/^This call waited for a concurrent call with the same idempotency key instead of sending/);
      expect(error.message).toContain("The next request with that key sends again.");
    }
  });

  test("reports a duplicate still waiting at its deadline as in progress", async () => {
    env.gateway.on("/sms", delayed(1_000, accepted()));
    const { delivery, integration } = await harness();

    const first = delivery.send(integration, message);
    await waitFor(() => env.gateway.requestsTo("/sms").length === 1);
    const error = await idempotencyErrorOf(delivery.send(integration, message, { deadlineMs: 200 }), "in_progress");

    expect(error.message).toContain("still in progress when this call's time ran out (its deadline, or SEND_TIMEOUT_MS");
    expect((await first).replayed).toBe(false);
  });

  test.each([
    ["shutdown", () => new GraceEndedError(), "the shutdown grace period of this service instance ended"],
    ["cancel", () => new DOMException("canceled", "AbortError"), "this call was canceled"],
  ])("names the %s that ended a duplicate's wait", async (_end, reason, wording) => {
    env.gateway.on("/sms", delayed(1_000, accepted()));
    const { delivery, integration } = await harness();
    const first = delivery.send(integration, message);
    await waitFor(() => env.gateway.requestsTo("/sms").length === 1);
    const caller = new AbortController();

    const duplicate = delivery.send(integration, message, { signal: caller.signal });
    setTimeout(() => caller.abort(reason()), 100);
    const error = await idempotencyErrorOf(duplicate, "in_progress");

    expect(error.message).toContain(`still in progress when ${wording}`);
    expect((await first).replayed).toBe(false);
  });

  test("reports a duplicate whose owner was canceled after writing as unknown", async () => {
    env.gateway.on("/sms", delayed(1_000, accepted()));
    const { delivery, integration } = await harness();
    const firstCaller = new AbortController();
    const first = delivery.send(integration, message, { signal: firstCaller.signal }).catch((error: unknown) => error);
    await waitFor(() => env.gateway.requestsTo("/sms").length === 1);

    const duplicate = delivery.send(integration, message);
    setTimeout(() => firstCaller.abort(), 100);
    const error = await idempotencyErrorOf(duplicate, "outcome_unknown");

    expect(error.message).toContain("was canceled by its caller");
    expect(String(await first)).toContain("The caller canceled");
    expect(env.gateway.requestsTo("/sms")).toHaveLength(1);
  });

  test("sends a duplicate itself when its owner was canceled before writing", async () => {
    env.gateway.on("/auth", delayed(1_000, { json: { data: { token: "t-1" } } }));
    env.gateway.on("/sms", accepted("m-duplicate"));
    const { delivery, integration } = await harness({
      integration: { baseUrl: env.gateway.url("/sms"), authenticateByToken: true, authUrl: env.gateway.url("/auth"), tokenKey: "token" },
    });
    const firstCaller = new AbortController();
    const first = delivery.send(integration, message, { signal: firstCaller.signal });
    await waitFor(() => env.gateway.requestsTo("/auth").length === 1);

    const duplicate = delivery.send(integration, message);
    setTimeout(() => firstCaller.abort(), 100);

    await expect(first).rejects.toThrow("The caller canceled");
    expect(await duplicate).toMatchObject({ id: "m-duplicate", replayed: false });
    expect(env.gateway.requestsTo("/sms")).toHaveLength(1);
  });

  test("reports an abandoned claim as unknown, then sends on the next request", async () => {
    env.gateway.on("/sms", accepted("m-after-crash"));
    const { delivery, integration, idempotency } = await harness();
    const past = new Date(Date.now() - 60_000);
    await idempotency.claim({
      integrationId: "acme",
      key: "order-42",
      requestHash: requestHash("acme", message),
      owner: "crashed-replica",
      leaseExpireTime: past,
      expireTime: new Date(Date.now() + 3_600_000),
      now: past,
    });

    const error = await idempotencyErrorOf(delivery.send(integration, message), "outcome_unknown");
    expect(error.message).toContain("recorded no outcome");
    expect(error.message).toContain("its service instance ended");
    expect(error.message).toContain("storing the outcome failed");
    expect(env.gateway.requestsTo("/sms")).toHaveLength(0);

    const retried = await delivery.send(integration, message);
    expect(retried).toMatchObject({ id: "m-after-crash", replayed: false });
    expect(env.gateway.requestsTo("/sms")).toHaveLength(1);
  });

  test("leaves an abandoned claim to a caller still waiting", async () => {
    const { idempotency } = await harness();
    const past = new Date(Date.now() - 60_000);
    const scope = { integrationId: "acme", key: "order-42", requestHash: requestHash("acme", message) };
    await idempotency.claim({ ...scope, owner: "crashed-replica", leaseExpireTime: past, expireTime: new Date(Date.now() + 3_600_000), now: past });
    const keys = new IdempotencyKeys({ store: idempotency, ttlSeconds: 3600, logger: pino({ level: "silent" }) });
    const abortedDeadline = new SendDeadline(10_000, AbortSignal.abort());

    await idempotencyErrorOf(
      keys.run(scope, abortedDeadline, () => Promise.reject(new Error("must not send"))),
      "in_progress",
    );
    abortedDeadline.dispose();

    expect(await idempotency.get("acme", "order-42")).toMatchObject({ state: "pending", owner: "crashed-replica" });
  });

  test("stores a late owner's outcome after abandon", async () => {
    const { idempotency } = await harness();
    const now = new Date();
    const claim = {
      integrationId: "acme",
      key: "late",
      requestHash: "h",
      owner: "slow-owner",
      leaseExpireTime: new Date(now.getTime() - 1),
      expireTime: new Date(now.getTime() + 60_000),
      now,
    };
    expect(await idempotency.claim(claim)).toBe(true);
    expect(await idempotency.abandon("acme", "late", "slow-owner", "{}", now)).toBe(true);

    const finished = await idempotency.finish("acme", "late", "slow-owner", {
      state: "done",
      outcome: "{}",
      expireTime: claim.expireTime,
      now,
    });

    expect(finished).toBe(true);
    expect((await idempotency.get("acme", "late"))?.state).toBe("done");
  });

  test("reuses a key for another request once its outcome expired", async () => {
    env.gateway.on("/sms", inOrder(accepted("m-old"), accepted("m-new")));
    let now = new Date("2026-03-01T00:00:00Z");
    const { delivery, integration, idempotency } = await harness({
      settings: { idempotencyTtlSeconds: 60 },
      now: () => now,
    });
    await delivery.send(integration, message);

    now = new Date(now.getTime() + 61_000);
    const changed = { ...message, content: "new text" };
    const result = await delivery.send(integration, changed);

    expect(result).toMatchObject({ id: "m-new", replayed: false });
    expect((await idempotency.get("acme", "order-42"))?.requestHash).toBe(requestHash("acme", changed));
  });

  test("keeps a key claimed while its send outlasts the TTL", async () => {
    env.gateway.on("/sms", delayed(1_000, accepted("m-first")));
    let now = new Date("2026-03-01T00:00:00Z");
    const { delivery, integration } = await harness({
      settings: { idempotencyTtlSeconds: 60, attemptTimeoutMs: 120_000 },
      dispatcher: { timeoutMs: 120_000 },
      now: () => now,
    });
    const first = delivery.send(integration, message);
    await waitFor(() => env.gateway.requestsTo("/sms").length === 1);

    // The duplicate comes after the TTL, while the first send has not finished.
    now = new Date(now.getTime() + 61_000);
    await idempotencyErrorOf(delivery.send(integration, message, { deadlineMs: 200 }), "in_progress");

    expect((await first).id).toBe("m-first");
    expect(env.gateway.requestsTo("/sms")).toHaveLength(1);
  });

  test("purges expired keys when it claims another", async () => {
    env.gateway.on("/sms", accepted());
    let now = new Date("2026-03-01T00:00:00Z");
    const { delivery, integration, idempotency } = await harness({
      settings: { idempotencyTtlSeconds: 60 },
      now: () => now,
    });
    await delivery.send(integration, { ...message, idempotencyKey: "old-1" });
    await delivery.send(integration, { ...message, idempotencyKey: "old-2" });

    now = new Date(now.getTime() + 120_000);
    await delivery.send(integration, { ...message, idempotencyKey: "fresh" });
    await delivery.close();

    expect(await idempotency.get("acme", "old-1")).toBeNull();
    expect(await idempotency.get("acme", "old-2")).toBeNull();
    expect(await idempotency.get("acme", "fresh")).not.toBeNull();
  });

  test("drops the keys of a deleted integration", async () => {
    env.gateway.on("/sms", accepted());
    const { delivery, integration, idempotency, store } = await harness();
    await delivery.send(integration, message);

    await store.delete("acme");

    expect(await idempotency.get("acme", "order-42")).toBeNull();
  });
});

describe("Delivery's hook before the first request", () => {
  test("stops the send and frees the key", async () => {
    env.gateway.on("/sms", accepted("m-after-stop"));
    const { delivery, integration, idempotency } = await harness();
    const stop = () => {
      throw new Error("stopped before the request");
    };

    await expect(delivery.send(integration, message, { beforeFirstRequest: stop })).rejects.toThrow("stopped before the request");
    const record = await idempotency.get("acme", "order-42");
    const sent = await delivery.send(integration, message);

    expect(env.gateway.requestsTo("/sms")).toHaveLength(1);
    expect(record?.state).toBe("retryable");
    expect(sent).toMatchObject({ id: "m-after-stop", replayed: false });
  });

  test.each([
    ["a stop before the request", "sends", () => new StoppedForTestError("stopped before the request")],
    ["any other error", "reports unknown", () => new Error("failed inside the service")],
  ])("after %s, a waiting duplicate %s", async (_case, expected, stopError) => {
    env.gateway.on("/auth", delayed(300, { json: { data: { token: "t-1" } } }));
    env.gateway.on("/sms", accepted("m-duplicate"));
    const { delivery, integration } = await harness({
      integration: { baseUrl: env.gateway.url("/sms"), authenticateByToken: true, authUrl: env.gateway.url("/auth"), tokenKey: "token" },
    });
    const error = stopError();
    const stop = () => {
      throw error;
    };

    // The first send claims the key, fetches a token, then stops before its SMS request.
    const first = delivery.send(integration, message, { beforeFirstRequest: stop });
    await waitFor(() => env.gateway.requestsTo("/auth").length === 1);
    const duplicate = delivery.send(integration, message);

    await expect(first).rejects.toBe(error);
    if (expected === "sends") {
      expect(await duplicate).toMatchObject({ id: "m-duplicate", replayed: false });
      expect(env.gateway.requestsTo("/sms")).toHaveLength(1);
    } else {
      await idempotencyErrorOf(duplicate, "outcome_unknown");
      expect(env.gateway.requestsTo("/sms")).toHaveLength(0);
    }
  });

  test("runs before the first attempt only", async () => {
    env.gateway.on("/sms", inOrder({ status: 503 }, accepted("m-retried")));
    const { delivery, integration } = await harness();
    let calls = 0;

    const sent = await delivery.send(integration, message, {
      beforeFirstRequest: () => {
        calls += 1;
      },
    });

    expect(sent).toMatchObject({ id: "m-retried", attempts: 2 });
    expect(calls).toBe(1);
  });
});

describe("a key's stored outcome", () => {
  const scope = { integrationId: "acme", key: "order-42", requestHash: requestHash("acme", message) };

  /** Claims the key for an owner whose lease ends `leaseMs` from now. */
  function claimWithLease(idempotency: Harness["idempotency"], leaseMs: number): Promise<boolean> {
    const now = new Date();
    const leaseExpireTime = new Date(now.getTime() + leaseMs);
    return idempotency.claim({ ...scope, owner: "other-send", leaseExpireTime, expireTime: new Date(now.getTime() + 3_600_000), now });
  }

  test("is none for a new key", async () => {
    const { delivery, integration } = await harness();

    expect(await delivery.storedOutcome(integration, message)).toEqual({ kind: "none" });
  });

  test("is claimed while a send's lease runs", async () => {
    const { delivery, integration, idempotency } = await harness();
    await claimWithLease(idempotency, 60_000);

    expect(await delivery.storedOutcome(integration, message)).toEqual({ kind: "claimed" });
  });

  test("is none once the lease ran out", async () => {
    const { delivery, integration, idempotency } = await harness();
    await claimWithLease(idempotency, -1);

    expect(await delivery.storedOutcome(integration, message)).toEqual({ kind: "none" });
  });

  test("is found after a send", async () => {
    env.gateway.on("/sms", accepted("m-kept"));
    const { delivery, integration } = await harness();
    await delivery.send(integration, message);

    expect(await delivery.storedOutcome(integration, message)).toMatchObject({ kind: "found", result: { id: "m-kept", replayed: true } });
  });
});

describe.skipIf(SKIP_POSTGRES)("Delivery with an idempotency key on shared PostgreSQL", () => {
  const schema = uniqueSchemaName();

  beforeAll(assertPostgresReachable);
  afterAll(() => dropSchema(schema));

  test("two service instances send once for concurrent duplicates", async () => {
    env.gateway.on("/sms", delayed(300, accepted("m-shared")));
    const target = { kind: "postgres" as const, databaseUrl: TEST_DATABASE_URL, schema };
    const first = await harness({ target });
    const second = await harness({ target });

    const results = await Promise.all(
      Array.from({ length: 10 }, (_unused, index) => {
        const instance = index % 2 === 0 ? first : second;
        return instance.delivery.send(instance.integration, message);
      }),
    );

    expect(env.gateway.requestsTo("/sms")).toHaveLength(1);
    expect(results.map((result) => result.id)).toEqual(Array(10).fill("m-shared"));
    expect(results.filter((result) => !result.replayed)).toHaveLength(1);
  });
});

/** Polls `condition` every 10 ms until it holds, for at most 5 seconds. */
async function waitFor(condition: () => boolean): Promise<void> {
  for (let waited = 0; !condition(); waited += 10) {
    if (waited > 5_000) {
      throw new Error("condition not met within 5 seconds");
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
