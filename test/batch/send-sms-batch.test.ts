import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { ErrorInfoSchema, GatewayErrorSchema, RetryInfoSchema } from "../../gen/smsgateway/v1/errors_pb.js";
import { SmsService, type MessageError } from "../../gen/smsgateway/v1/sms_service_pb.js";
import { requestHash } from "../../src/delivery/request-hash.js";
import { openStore } from "../../src/store/open-store.js";
import { CLIENT_KINDS } from "../helpers/clients.js";
import { ScriptedGateway, type RecordedRequest } from "../helpers/scripted-gateway.js";
import { startTestService } from "../helpers/service.js";
import { createApiKey } from "../security/security-fixtures.js";
import { silentLogger } from "../store/integration-fixtures.js";
import { connectClients, integrationFor, rejectionOf, startFlowTestBed, type FlowTestBed } from "../flow/flow-fixtures.js";
import {
  acceptedByRecipient,
  codesOf,
  detailsOf,
  errorOf,
  messages,
  reasonOf,
  recipientOf,
  sentOf,
  violatedFields,
} from "./batch-fixtures.js";

const MAX_MESSAGES = 1_500;

let bed: FlowTestBed;

beforeAll(async () => {
  bed = await startFlowTestBed({ batchMaxMessages: MAX_MESSAGES, retryBaseDelayMs: 10, retryMaxDelayMs: 20 });
  bed.gateway.on("/sms", acceptedByRecipient);
  await bed.configure("acme", bed.gateway.url("/sms"));
});

afterAll(async () => {
  await bed.stop();
});

/** Returns the requests that reached the gateway's `/sms` for the given recipients. */
function requestsFor(recipients: readonly string[]) {
  return bed.gateway.requestsTo("/sms").filter((request) => recipients.includes(recipientOf(request)));
}

describe.each(CLIENT_KINDS)("over $name", (kind) => {
  test("mixed results keep request order", async () => {
    const id = `mixed-${CLIENT_KINDS.indexOf(kind)}`;
    const path = `/${id}`;
    bed.gateway.on(path, (request) =>
      recipientOf(request).endsWith("02") ? { status: 400, json: { error: "unknown number" } } : acceptedByRecipient(request),
    );
    await bed.configure(id, bed.gateway.url(path));
    const batch = messages(6);
    batch[3] = { ...batch[3]!, to: "" };
    batch[5] = { ...batch[5]!, passthrough: { headers: { Host: "elsewhere" } } };
    const { client, close } = kind.create(SmsService, bed.service.baseUrl);

    try {
      const response = await client.sendSmsBatch({ integrationId: id, messages: batch });

      expect(codesOf(response)).toEqual(["OK", "OK", "FAILED_PRECONDITION", "INVALID_ARGUMENT", "OK", "INVALID_ARGUMENT"]);
      expect(response.succeededCount).toBe(3);
      expect(response.failedCount).toBe(3);
      expect(sentOf(response.results[0]).id).toBe("id-+1555000000");
      expect(sentOf(response.results[4]).id).toBe("id-+1555000004");
      expect(sentOf(response.results[4]).gatewayStatus).toBe(200);

      const rejected = errorOf(response.results[2]);
      expect(rejected.code).toBe(Code.FailedPrecondition);
      expect(detailsOf(rejected, GatewayErrorSchema)[0]).toMatchObject({ httpStatus: 400, bodyExcerpt: '{"error":"unknown number"}' });

      const invalid = errorOf(response.results[3]);
      expect(invalid.code).toBe(Code.InvalidArgument);
      expect(invalid.message).toContain("messages[3].to: required");
      expect(violatedFields(invalid)).toEqual(["messages[3].to"]);
      expect(violatedFields(errorOf(response.results[5]))).toEqual(['messages[5].passthrough.headers["Host"]']);
      expect(bed.gateway.requestsTo(path).map(recipientOf).sort()).toEqual(["+1555000000", "+1555000001", "+1555000002", "+1555000004"]);
    } finally {
      close();
    }
  });

  test("unknown integration fails the call", async () => {
    const { client, close } = kind.create(SmsService, bed.service.baseUrl);
    try {
      const error = await rejectionOf(client.sendSmsBatch({ integrationId: "int_missing", messages: messages(2) }));

      expect(error.code).toBe(Code.NotFound);
    } finally {
      close();
    }
  });
});

describe("whole-batch errors", () => {
  test.each([
    { name: "no messages", request: { integrationId: "acme", messages: [] }, field: "messages", text: "at least one message" },
    {
      name: "too many messages",
      request: { integrationId: "acme", messages: messages(MAX_MESSAGES + 1) },
      field: "messages",
      text: `contains ${MAX_MESSAGES + 1} messages, more than BATCH_MAX_MESSAGES (${MAX_MESSAGES})`,
    },
    { name: "missing integration_id", request: { messages: messages(1) }, field: "integration_id", text: "required" },
    { name: "empty batch sender", request: { integrationId: "acme", messages: messages(1), sender: "" }, field: "sender", text: "is empty" },
    {
      name: "invalid batch passthrough",
      request: { integrationId: "acme", messages: messages(1), passthrough: { headers: { "X-API-KEY": "other" } } },
      field: 'passthrough.headers["X-API-KEY"]',
      text: "carries the integration's credentials",
    },
  ])("$name is INVALID_ARGUMENT", async ({ request, field, text }) => {
    const before = bed.gateway.requests.length;

    const error = await rejectionOf(bed.clients.sms.sendSmsBatch(request));

    expect(error.code).toBe(Code.InvalidArgument);
    expect(error.rawMessage).toContain(text);
    expect(error.rawMessage).toContain(field);
    expect(bed.gateway.requests.length).toBe(before);
  });

  test("request over MAX_REQUEST_BYTES is RESOURCE_EXHAUSTED", async () => {
    const small = await startTestService({ maxRequestBytes: 64 * 1024 });
    // About 86 KB in protobuf. Over HTTP/1.1 the server may close the connection before the client
    // has written the whole request, and the client then sees a reset instead, so only HTTP/2 clients run.
    const batch = messages(3_000);
    try {
      for (const kind of CLIENT_KINDS.filter((candidate) => !candidate.name.includes("HTTP/1.1"))) {
        const { client, close } = kind.create(SmsService, small.baseUrl);
        try {
          const error = await rejectionOf(client.sendSmsBatch({ integrationId: "acme", messages: batch }));

          expect(error.code, kind.name).toBe(Code.ResourceExhausted);
        } finally {
          close();
        }
      }
    } finally {
      await small.stop();
    }
  });
});

describe("batch defaults", () => {
  test("a message's fields override the batch's", async () => {
    const batch = [
      { to: "+15551000001", content: "uses the defaults" },
      { to: "+15551000002", content: "own sender", sender: "Own" },
      { to: "+15551000003", content: "own passthrough", passthrough: { body: { priority: "low" } } },
    ];

    const response = await bed.clients.sms.sendSmsBatch({
      integrationId: "acme",
      messages: batch,
      sender: "Batch",
      passthrough: { body: { priority: "high" }, headers: { "X-Campaign": "spring" } },
    });

    expect(codesOf(response)).toEqual(["OK", "OK", "OK"]);
    const [first, second, third] = batch.map((message) => requestsFor([message.to])[0]!) as [RecordedRequest, RecordedRequest, RecordedRequest];
    expect(JSON.parse(first.body)).toEqual({ to: "+15551000001", content: "uses the defaults", sender: "Batch", priority: "high" });
    expect(first.headers["x-campaign"]).toBe("spring");
    expect(JSON.parse(second.body)).toMatchObject({ sender: "Own", priority: "high" });
    expect(JSON.parse(third.body)).toEqual({ to: "+15551000003", content: "own passthrough", sender: "Batch", priority: "low" });
    expect(third.headers["x-campaign"]).toBeUndefined();
  });

  test("without defaults the integration's sender applies", async () => {
    const response = await bed.clients.sms.sendSmsBatch({ integrationId: "acme", messages: [{ to: "+15551000004", content: "hi" }] });

    expect(codesOf(response)).toEqual(["OK"]);
    expect(JSON.parse(requestsFor(["+15551000004"])[0]!.body)).toMatchObject({ sender: "Acme" });
  });
});

describe("idempotency keys", () => {
  test("a repeated batch replays the sent messages", async () => {
    const run = Date.now();
    const failing = "+15552000001";
    bed.gateway.on("/flaky", (request) => (recipientOf(request) === failing ? { status: 500 } : acceptedByRecipient(request)));
    await bed.configure("flaky", bed.gateway.url("/flaky"));
    const batch = [
      { to: "+15552000000", content: "one", idempotencyKey: `${run}-0` },
      { to: failing, content: "two", idempotencyKey: `${run}-1` },
      { to: "+15552000002", content: "three", idempotencyKey: `${run}-2` },
    ];

    const first = await bed.clients.sms.sendSmsBatch({ integrationId: "flaky", messages: batch });
    bed.gateway.on("/flaky", acceptedByRecipient);
    const second = await bed.clients.sms.sendSmsBatch({ integrationId: "flaky", messages: batch });

    expect(codesOf(first)).toEqual(["OK", "UNAVAILABLE", "OK"]);
    expect(codesOf(second)).toEqual(["OK", "OK", "OK"]);
    expect(second.results.map((result) => (result.outcome.case === "response" ? result.outcome.value.replayed : undefined))).toEqual([
      true,
      false,
      true,
    ]);
    expect(sentOf(second.results[0]).id).toBe("id-+15552000000");
    const received = bed.gateway.requestsTo("/flaky");
    expect(received.filter((request) => recipientOf(request) === "+15552000000")).toHaveLength(1);
    expect(received.filter((request) => recipientOf(request) === "+15552000002")).toHaveLength(1);
    expect(received.every((request) => String(request.headers["idempotency-key"]).startsWith(`${run}-`))).toBe(true);
  });

  test("a batch with a SendSms key replays it", async () => {
    const key = `shared-${Date.now()}`;
    const sent = await bed.clients.sms.sendSms({ integrationId: "acme", to: "+15552000010", content: "once", idempotencyKey: key });

    const response = await bed.clients.sms.sendSmsBatch({
      integrationId: "acme",
      messages: [{ to: "+15552000010", content: "once", idempotencyKey: key }],
    });

    expect(sentOf(response.results[0])).toMatchObject({ id: sent.id, replayed: true });
    expect(requestsFor(["+15552000010"])).toHaveLength(1);
  });

  test("two messages with one key fail the second", async () => {
    const key = `twice-${Date.now()}`;

    const response = await bed.clients.sms.sendSmsBatch({
      integrationId: "acme",
      messages: [
        { to: "+15552000020", content: "first", idempotencyKey: key },
        { to: "+15552000021", content: "other" },
        { to: "+15552000022", content: "second", idempotencyKey: key },
      ],
    });

    expect(codesOf(response)).toEqual(["OK", "OK", "INVALID_ARGUMENT"]);
    expect(violatedFields(errorOf(response.results[2]))).toEqual(["messages[2].idempotency_key"]);
    expect(errorOf(response.results[2]).message).toContain("also the key of messages[0]");
    expect(requestsFor(["+15552000022"])).toHaveLength(0);
  });
});

describe("idempotency errors of a message", () => {
  /** Returns the `field` metadata of a message error's ErrorInfo detail. */
  function errorFieldOf(error: MessageError): string | undefined {
    return detailsOf(error, ErrorInfoSchema)[0]?.metadata["field"];
  }

  /** Stores a claim on `key` for the message `to`/`content` of `acme`, held by another instance until `leaseExpireTime`. */
  async function claimKey(key: string, to: string, content: string, leaseExpireTime: Date): Promise<void> {
    const { store, idempotency } = await openStore({ dataDir: bed.service.dataDir, logger: silentLogger() });
    try {
      await idempotency.claim({
        integrationId: "acme",
        key,
        requestHash: requestHash("acme", { to, content }),
        owner: "other-instance",
        leaseExpireTime,
        expireTime: new Date(Date.now() + 3_600_000),
        now: new Date(),
      });
    } finally {
      await store.close();
    }
  }

  test("a reused key names the message's path", async () => {
    const key = `reused-${Date.now()}`;
    await bed.clients.sms.sendSms({ integrationId: "acme", to: "+15552000030", content: "first", idempotencyKey: key });

    const response = await bed.clients.sms.sendSmsBatch({
      integrationId: "acme",
      messages: [
        { to: "+15552000031", content: "other" },
        { to: "+15552000030", content: "changed", idempotencyKey: key },
      ],
    });

    expect(codesOf(response)).toEqual(["OK", "FAILED_PRECONDITION"]);
    const error = errorOf(response.results[1]);
    expect(reasonOf(error)).toBe("IDEMPOTENCY_KEY_REUSED");
    expect(errorFieldOf(error)).toBe("messages[1].idempotency_key");
    expect(error.message).toMatch(/^messages\[1\]\.idempotency_key: /);
    expect(error.message).toContain(`"${key}" was already used for a different request`);
    expect(requestsFor(["+15552000030"])).toHaveLength(1);
  });

  test("a key in progress names the message's path", async () => {
    const key = `held-${Date.now()}`;
    await claimKey(key, "+15552000040", "held", new Date(Date.now() + 60_000));

    const response = await bed.clients.sms.sendSmsBatch(
      { integrationId: "acme", messages: [{ to: "+15552000040", content: "held", idempotencyKey: key }] },
      { timeoutMs: 1_500 },
    );

    expect(codesOf(response)).toEqual(["ABORTED"]);
    const error = errorOf(response.results[0]);
    expect(reasonOf(error)).toBe("IDEMPOTENCY_KEY_IN_PROGRESS");
    expect(errorFieldOf(error)).toBe("messages[0].idempotency_key");
    expect(error.message).toMatch(/^messages\[0\]\.idempotency_key: /);
    expect(requestsFor(["+15552000040"])).toHaveLength(0);
  });

  test("an unknown outcome names the message's path", async () => {
    const key = `abandoned-${Date.now()}`;
    await claimKey(key, "+15552000050", "abandoned", new Date(Date.now() - 60_000));

    const response = await bed.clients.sms.sendSmsBatch({
      integrationId: "acme",
      messages: [
        { to: "+15552000051", content: "other" },
        { to: "+15552000052", content: "other" },
        { to: "+15552000050", content: "abandoned", idempotencyKey: key },
      ],
    });

    expect(codesOf(response)).toEqual(["OK", "OK", "ABORTED"]);
    const error = errorOf(response.results[2]);
    expect(reasonOf(error)).toBe("IDEMPOTENCY_OUTCOME_UNKNOWN");
    expect(errorFieldOf(error)).toBe("messages[2].idempotency_key");
    expect(error.message).toMatch(/^messages\[2\]\.idempotency_key: /);
    expect(error.message).toContain("recorded no outcome");
    expect(requestsFor(["+15552000050"])).toHaveLength(0);
  });
});

test("gateway Retry-After reaches the result as RetryInfo", async () => {
  bed.gateway.on("/busy", { status: 429, headers: { "retry-after": "60" }, json: { error: "slow down" } });
  await bed.configure("busy", bed.gateway.url("/busy"));

  const response = await bed.clients.sms.sendSmsBatch({ integrationId: "busy", messages: messages(1) });

  const error = errorOf(response.results[0]);
  expect(error.codeName).toBe("RESOURCE_EXHAUSTED");
  expect(detailsOf(error, RetryInfoSchema)[0]?.retryDelay?.seconds).toBe(60n);
  expect(reasonOf(error)).toBe("");
});

test("a batch of 1,000 messages completes", async () => {
  const gateway = await ScriptedGateway.start();
  gateway.on("/bulk", acceptedByRecipient);
  await bed.configure("bulk", gateway.url("/bulk"));
  try {
    const run = Date.now();
    const batch = messages(1_000).map((message, index) => ({ ...message, idempotencyKey: `bulk-${run}-${index}` }));

    const response = await bed.clients.sms.sendSmsBatch({ integrationId: "bulk", messages: batch }, { timeoutMs: 120_000 });

    expect(response.succeededCount).toBe(1_000);
    expect(response.failedCount).toBe(0);
    expect(response.results.map((result) => sentOf(result).id)).toEqual(batch.map((message) => `id-${message.to}`));
    expect(gateway.requestsTo("/bulk")).toHaveLength(1_000);
  } finally {
    await gateway.close();
  }
});

test("SendSmsBatch needs the sms:send scope", async () => {
  const sender = createApiKey("sender", "sms:send");
  const reader = createApiKey("reader", "integrations:read+integrations:write");
  const secured = await startTestService({ apiKeys: [sender.entry, reader.entry].join(",") });
  try {
    const clients = connectClients(secured.baseUrl);
    const asReader = { headers: { authorization: `Bearer ${reader.key}` } };
    await clients.integrations.configureIntegration({ integration: integrationFor("acme", bed.gateway.url("/sms")), allowMissing: true }, asReader);
    const request = { integrationId: "acme", messages: messages(1) };

    const denied = await rejectionOf(clients.sms.sendSmsBatch(request, asReader));
    const sent = await clients.sms.sendSmsBatch(request, { headers: { authorization: `Bearer ${sender.key}` } });

    expect(denied.code).toBe(Code.PermissionDenied);
    expect(denied.rawMessage).toContain("sms:send");
    expect(codesOf(sent)).toEqual(["OK"]);
  } finally {
    await secured.stop();
  }
});
