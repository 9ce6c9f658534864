import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, beforeEach, describe, expect, test } from "vitest";

import { BadRequestSchema, ErrorInfoSchema, GatewayErrorSchema, RetryInfoSchema } from "../../gen/smsgateway/v1/errors_pb.js";
import { IntegrationService } from "../../gen/smsgateway/v1/integration_service_pb.js";
import { SmsService } from "../../gen/smsgateway/v1/sms_service_pb.js";
import { requestHash } from "../../src/delivery/request-hash.js";
import { MAX_RETRY_AFTER_SECONDS } from "../../src/dispatch/retry-after.js";
import { openStore } from "../../src/store/open-store.js";
import { CLIENT_KINDS } from "../helpers/clients.js";
import { ScriptedGateway } from "../helpers/scripted-gateway.js";
import { startTestService, type TestService } from "../helpers/service.js";
import { silentLogger } from "../store/integration-fixtures.js";
import { accepted, inOrder } from "./fixtures.js";

let service: TestService;
let gateway: ScriptedGateway;
let integrations: Client<typeof IntegrationService>;
let sms: Client<typeof SmsService>;
let nextKey = 0;

beforeAll(async () => {
  service = await startTestService({ retryBaseDelayMs: 10, retryMaxDelayMs: 20 });
  gateway = await ScriptedGateway.start();
  const transport = createConnectTransport({ baseUrl: service.baseUrl, httpVersion: "1.1" });
  integrations = createClient(IntegrationService, transport);
  sms = createClient(SmsService, transport);
  await integrations.configureIntegration({
    integration: {
      id: "acme",
      baseUrl: gateway.url("/sms"),
      apiKeyHeader: "X-API-KEY",
      apiKey: "key-0123456789",
      defaultSender: "Acme",
    },
    allowMissing: true,
  });
});

afterAll(async () => {
  await service.stop();
  await gateway.close();
});

beforeEach(() => {
  gateway.requests.length = 0;
  gateway.on("/sms", accepted());
});

/** Returns a key no other test uses. */
function freshKey(): string {
  nextKey += 1;
  return `key-${nextKey}-${Date.now()}`;
}

async function rejection(promise: Promise<unknown>): Promise<ConnectError> {
  try {
    await promise;
  } catch (error) {
    return ConnectError.from(error);
  }
  throw new Error("expected the call to fail");
}

describe("SendSms reliability over RPC", () => {
  test("replays a repeat and reports attempts", async () => {
    gateway.on("/sms", inOrder({ status: 503 }, accepted("m-rpc")));
    const request = { integrationId: "acme", to: "+15551234567", content: "hi", idempotencyKey: freshKey() };

    const first = await sms.sendSms(request);
    const second = await sms.sendSms(request);

    expect(first).toMatchObject({ id: "m-rpc", attempts: 2, replayed: false });
    expect(second).toMatchObject({ id: "m-rpc", attempts: 2, replayed: true });
    expect(gateway.requestsTo("/sms").map((received) => received.headers["idempotency-key"])).toEqual([
      request.idempotencyKey,
      request.idempotencyKey,
    ]);
  });

  test("marks a replayed failure as a replay", async () => {
    gateway.on("/sms", inOrder({ status: 400, json: { error: "invalid sender" } }, accepted("m-new-key")));
    const request = { integrationId: "acme", to: "+15551234567", content: "hi", idempotencyKey: freshKey() };

    const first = await rejection(sms.sendSms(request));
    const repeat = await rejection(sms.sendSms(request));
    const withNewKey = await sms.sendSms({ ...request, idempotencyKey: freshKey() });

    expect(first.code).toBe(Code.FailedPrecondition);
    expect(repeat.code).toBe(Code.FailedPrecondition);
    expect(repeat.rawMessage).toContain("returns the stored outcome of an earlier call with the same idempotency key");
    expect(repeat.rawMessage).toContain("a new key is needed to send again");
    expect(repeat.rawMessage).toContain(first.rawMessage);
    expect(first.rawMessage).not.toContain("idempotency key");
    const [firstDetail] = first.findDetails(GatewayErrorSchema);
    expect(firstDetail).toMatchObject({ httpStatus: 400, bodyExcerpt: '{"error":"invalid sender"}', attempts: 1 });
    expect(repeat.findDetails(GatewayErrorSchema)).toEqual([firstDetail]);
    expect(withNewKey).toMatchObject({ id: "m-new-key", replayed: false });
    expect(gateway.requestsTo("/sms")).toHaveLength(2);
  });

  test("marks an outcome that may have reached the gateway", async () => {
    gateway.on("/sms", { reset: true });

    const error = await rejection(sms.sendSms({ integrationId: "acme", to: "+15551234567", content: "hi" }));

    expect(error.code).toBe(Code.Unavailable);
    expect(error.rawMessage).toContain("may have received the request");
    const [detail] = error.findDetails(GatewayErrorSchema);
    expect(detail).toMatchObject({ outcomeUnknown: true, attempts: 1, httpStatus: 0 });
  });

  test("passes a Retry-After past safe integers on, capped", async () => {
    gateway.on("/sms", { status: 429, headers: { "retry-after": "99999999999999999999" } });

    const error = await rejection(sms.sendSms({ integrationId: "acme", to: "+15551234567", content: "hi" }));

    expect(error.code).toBe(Code.ResourceExhausted);
    expect(error.metadata.get("retry-after")).toBe(String(MAX_RETRY_AFTER_SECONDS));
    const [retry] = error.findDetails(RetryInfoSchema);
    expect(retry?.retryDelay?.seconds).toBe(BigInt(MAX_RETRY_AFTER_SECONDS));
    expect(gateway.requestsTo("/sms")).toHaveLength(1);
  });

  test.each([
    ["longer than 128 characters", "k".repeat(129)],
    ["not ASCII", "clé-1"],
    ["a control character", "key\n1"],
    ["a leading space", " key-1"],
  ])("rejects an idempotency_key %s", async (_name, idempotencyKey) => {
    const error = await rejection(sms.sendSms({ integrationId: "acme", to: "+15551234567", content: "hi", idempotencyKey }));

    expect(error.code).toBe(Code.InvalidArgument);
    const fields = error.findDetails(BadRequestSchema).flatMap((detail) => detail.fieldViolations.map((v) => v.field));
    expect(fields).toEqual(["idempotency_key"]);
    expect(gateway.requests).toHaveLength(0);
  });

  test("accepts a 128-character idempotency_key", async () => {
    const response = await sms.sendSms({ integrationId: "acme", to: "+15551234567", content: "hi", idempotencyKey: "k".repeat(128) });

    expect(response.replayed).toBe(false);
  });

  test("reports an abandoned key as ABORTED", async () => {
    const key = freshKey();
    const { store, idempotency } = await openStore({ dataDir: service.dataDir, logger: silentLogger() });
    const past = new Date(Date.now() - 60_000);
    await idempotency.claim({
      integrationId: "acme",
      key,
      requestHash: requestHash("acme", { to: "+15551234567", content: "hi" }),
      owner: "ended-replica",
      leaseExpireTime: past,
      expireTime: new Date(Date.now() + 3_600_000),
      now: past,
    });
    await store.close();

    const error = await rejection(sms.sendSms({ integrationId: "acme", to: "+15551234567", content: "hi", idempotencyKey: key }));

    expect(error.code).toBe(Code.Aborted);
    const [info] = error.findDetails(ErrorInfoSchema);
    expect(info).toMatchObject({ reason: "IDEMPOTENCY_OUTCOME_UNKNOWN", metadata: { field: "idempotency_key" } });
    expect(error.rawMessage).toMatch(/^idempotency_key: /);
    expect(gateway.requests).toHaveLength(0);
  });

  test("stores token_lifetime_seconds and clears it by mask", async () => {
    const base = { baseUrl: gateway.url("/sms"), apiKeyHeader: "X-API-KEY", apiKey: "key-0123456789", defaultSender: "Acme" };
    const created = await integrations.configureIntegration({
      integration: { id: "lifetime", ...base, tokenLifetimeSeconds: 300 },
      allowMissing: true,
    });
    const cleared = await integrations.configureIntegration({
      integration: { id: "lifetime" },
      updateMask: { paths: ["token_lifetime_seconds"] },
    });

    expect(created.integration?.tokenLifetimeSeconds).toBe(300);
    expect(cleared.integration?.tokenLifetimeSeconds).toBeUndefined();
    expect((await integrations.getIntegration({ id: "lifetime" })).integration?.tokenLifetimeSeconds).toBeUndefined();
  });

  test("rejects a negative token_lifetime_seconds", async () => {
    const error = await rejection(
      integrations.configureIntegration({
        integration: {
          baseUrl: gateway.url("/sms"),
          apiKeyHeader: "X-API-KEY",
          apiKey: "key-0123456789",
          defaultSender: "Acme",
          tokenLifetimeSeconds: -1,
        },
      }),
    );

    expect(error.code).toBe(Code.InvalidArgument);
    const fields = error.findDetails(BadRequestSchema).flatMap((detail) => detail.fieldViolations.map((v) => v.field));
    expect(fields).toEqual(["integration.token_lifetime_seconds"]);
  });
});

describe.each(CLIENT_KINDS)("SendSms key reuse over $name", (kind) => {
  test("fails with FAILED_PRECONDITION and IDEMPOTENCY_KEY_REUSED", async () => {
    const { client, close } = kind.create(SmsService, service.baseUrl);
    const key = freshKey();
    try {
      await client.sendSms({ integrationId: "acme", to: "+15551234567", content: "first", idempotencyKey: key });

      const error = await rejection(
        client.sendSms({ integrationId: "acme", to: "+15551234567", content: "second", idempotencyKey: key }),
      );

      expect(error.code).toBe(Code.FailedPrecondition);
      expect(error.rawMessage).toMatch(/^idempotency_key: /);
      expect(error.rawMessage).toContain(`"${key}" was already used for a different request`);
      const [info] = error.findDetails(ErrorInfoSchema);
      expect(info).toMatchObject({ reason: "IDEMPOTENCY_KEY_REUSED", metadata: { field: "idempotency_key" } });
      expect(gateway.requestsTo("/sms")).toHaveLength(1);
    } finally {
      close();
    }
  });
});
