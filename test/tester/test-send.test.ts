import { timestampDate } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { GatewayStage } from "../../gen/smsgateway/v1/errors_pb.js";
import { IntegrationService } from "../../gen/smsgateway/v1/integration_service_pb.js";
import { DateSource, SmsService } from "../../gen/smsgateway/v1/sms_service_pb.js";
import { CLIENT_KINDS } from "../helpers/clients.js";
import {
  API_KEY,
  CREDENTIALS,
  SECRET_KEY,
  TOKEN,
  responseText,
  startTesterSetup,
  storeIntegration,
  tokenIntegration,
  uniquePath,
  type TesterSetup,
} from "./tester-fixtures.js";

let setup: TesterSetup;

beforeAll(async () => {
  setup = await startTesterSetup();
});

afterAll(async () => {
  await setup.stop();
});

const MESSAGE = { to: "+15551230042", content: "Test from the console" };

describe.each(CLIENT_KINDS)("$name", (kind) => {
  const slug = kind.name.replace(/\W+/g, "-").toLowerCase();

  test("accepted send shows id, date and reply", async () => {
    const path = uniquePath("sms");
    setup.gateway.on(path, { json: { data: { id: "msg-42", date: "2026-01-02T03:04:05Z" }, echo: API_KEY } });
    const { client, close } = kind.create(IntegrationService, setup.service.baseUrl);
    try {
      const id = await storeIntegration(client, { baseUrl: setup.gateway.url(path) });

      const response = await client.testIntegration({
        target: { case: "integrationId", value: id },
        ...MESSAGE,
        passthrough: { body: { priority: "high" }, query: { campaign: "test" } },
        send: true,
      });

      const result = response.sendResult;
      expect(result?.accepted).toBe(true);
      expect(result?.failure).toBeUndefined();
      expect(result?.id).toBe("msg-42");
      expect(result?.date === undefined ? "" : timestampDate(result.date).toISOString()).toBe("2026-01-02T03:04:05.000Z");
      expect(result?.rawDate).toBe("2026-01-02T03:04:05Z");
      expect(result?.dateSource).toBe(DateSource.GATEWAY);
      expect(result?.gatewayStatus).toBe(200);
      expect(result?.attempts).toBe(1);
      expect(result?.warnings).toEqual([]);
      expect(JSON.parse(result?.replyExcerpt ?? "")).toEqual({ data: { id: "msg-42", date: "2026-01-02T03:04:05Z" }, echo: "[REDACTED]" });
      expect(result?.replyTruncated).toBe(false);
      expect(response.placeholderFields).toEqual([]);

      const received = setup.gateway.requestsTo(path);
      expect(received).toHaveLength(1);
      expect(received[0]?.body).toBe(response.smsRequest?.body);
      expect(JSON.parse(received[0]?.body ?? "")).toEqual({ ...MESSAGE, sender: "Acme", priority: "high" });
      expect(setup.gateway.url(received[0]?.url ?? "")).toBe(response.smsRequest?.url);
      expect(received[0]?.headers["x-api-key"]).toBe(API_KEY);
      expect(received[0]?.headers["x-secret-key"]).toBe(SECRET_KEY);
      expect(responseText(response)).not.toContain(API_KEY);
    } finally {
      close();
    }
  });

  test("gateway refusal is reported in the response", async () => {
    const path = uniquePath("sms");
    setup.gateway.on(path, { status: 401, json: { error: "invalid api key", echo: API_KEY } });
    const { client, close } = kind.create(IntegrationService, setup.service.baseUrl);
    try {
      const id = await storeIntegration(client, { baseUrl: setup.gateway.url(path) });

      const response = await client.testIntegration({ target: { case: "integrationId", value: id }, ...MESSAGE, send: true });

      const result = response.sendResult;
      expect(result?.accepted).toBe(false);
      expect(result?.failure?.code).toBe("FAILED_PRECONDITION");
      expect(result?.failure?.message).toBe(
        `The gateway refused the credentials in the SMS request of integration "${id}" with HTTP 401. ` +
          "Check api_key, secret_key and their header names.",
      );
      expect(result?.failure?.stage).toBe(GatewayStage.SEND);
      expect(result?.failure?.errorInfo).toBeUndefined();
      expect(result?.gatewayStatus).toBe(401);
      expect(result?.attempts).toBe(1);
      expect(JSON.parse(result?.replyExcerpt ?? "")).toEqual({ error: "invalid api key", echo: "[REDACTED]" });
      expect(result?.id).toBe("");
      expect(responseText(response)).not.toContain(API_KEY);
      expect(setup.gateway.requestsTo(path)).toHaveLength(1);
    } finally {
      close();
    }
  });

  test("token send redacts the token", async () => {
    const path = uniquePath("sms");
    const authPath = uniquePath("auth");
    setup.gateway.on(authPath, { json: { data: { "X-Token": TOKEN } } });
    setup.gateway.on(path, { json: { data: { id: "msg-7" }, seen: TOKEN } });
    const { client, close } = kind.create(IntegrationService, setup.service.baseUrl);
    try {
      const id = await storeIntegration(client, tokenIntegration(setup.gateway, path, authPath));

      const response = await client.testIntegration({ target: { case: "integrationId", value: id }, ...MESSAGE, send: true });

      expect(response.sendResult?.accepted).toBe(true);
      expect(response.sendResult?.id).toBe("msg-7");
      expect(JSON.parse(response.sendResult?.replyExcerpt ?? "")).toEqual({ data: { id: "msg-7" }, seen: "[REDACTED]" });
      expect(responseText(response)).not.toContain(TOKEN);
      expect(setup.gateway.requestsTo(authPath)).toHaveLength(1);
      expect(setup.gateway.requestsTo(path)[0]?.headers["x-token"]).toBe(TOKEN);
    } finally {
      close();
    }
  });

  test("token refusal names the token step", async () => {
    const path = uniquePath("sms");
    const authPath = uniquePath("auth");
    setup.gateway.on(authPath, { status: 403, json: { error: "unknown client" } });
    const { client, close } = kind.create(IntegrationService, setup.service.baseUrl);
    try {
      const id = await storeIntegration(client, tokenIntegration(setup.gateway, path, authPath));

      const response = await client.testIntegration({ target: { case: "integrationId", value: id }, ...MESSAGE, send: true });

      const result = response.sendResult;
      expect(result?.accepted).toBe(false);
      expect(result?.failure?.code).toBe("FAILED_PRECONDITION");
      expect(result?.failure?.stage).toBe(GatewayStage.AUTH);
      expect(result?.failure?.message).toContain("the token request to auth_url");
      expect(result?.gatewayStatus).toBe(403);
      expect(result?.replyExcerpt).toBe('{"error":"unknown client"}');
      expect(setup.gateway.requestsTo(path)).toHaveLength(0);
    } finally {
      close();
    }
  });

  test("unsaved integration is sent, not stored", async () => {
    const path = uniquePath("sms");
    setup.gateway.on(path, { json: { data: { id: "msg-unsaved" } } });
    const { client, close } = kind.create(IntegrationService, setup.service.baseUrl);
    try {
      const before = await client.listIntegrations({ pageSize: 1000 });

      const response = await client.testIntegration({
        target: { case: "integration", value: { ...CREDENTIALS, baseUrl: setup.gateway.url(path) } },
        ...MESSAGE,
        send: true,
      });
      const after = await client.listIntegrations({ pageSize: 1000 });

      expect(response.sendResult?.accepted).toBe(true);
      expect(response.sendResult?.id).toBe("msg-unsaved");
      expect(after.integrations.map((integration) => integration.id)).toEqual(before.integrations.map((integration) => integration.id));
      expect(setup.gateway.requestsTo(path)[0]?.headers["x-api-key"]).toBe(API_KEY);
      expect(setup.service.logLines).toContainEqual(
        expect.objectContaining({ msg: "test SMS accepted by the gateway", integrationId: "(unsaved)", to: "***042", status: 200 }),
      );
      expect(JSON.stringify(setup.service.logLines)).not.toContain(MESSAGE.to);
    } finally {
      close();
    }
  });

  test("unsaved edit uses the stored secrets", async () => {
    const storedPath = uniquePath("sms");
    const editedPath = uniquePath("sms");
    setup.gateway.on(editedPath, { json: { data: { id: "msg-edited" } } });
    const { client, close } = kind.create(IntegrationService, setup.service.baseUrl);
    try {
      const id = await storeIntegration(client, { baseUrl: setup.gateway.url(storedPath) });

      const response = await client.testIntegration({
        target: { case: "integration", value: { id, baseUrl: setup.gateway.url(editedPath) } },
        updateMask: { paths: ["base_url"] },
        ...MESSAGE,
        send: true,
      });
      const stored = await client.getIntegration({ id });

      expect(response.smsRequest?.url).toBe(setup.gateway.url(editedPath));
      expect(response.smsRequest?.headers.find((header) => header.name === "X-API-KEY")?.value).toBe("****1b9d");
      expect(response.sendResult?.id).toBe("msg-edited");
      expect(setup.gateway.requestsTo(editedPath)[0]?.headers["x-api-key"]).toBe(API_KEY);
      expect(setup.gateway.requestsTo(storedPath)).toHaveLength(0);
      expect(stored.integration?.baseUrl).toBe(setup.gateway.url(storedPath));
    } finally {
      close();
    }
  });

  test("flow-control rejection is reported", async () => {
    const path = uniquePath("sms");
    setup.gateway.on(path, { json: { data: { id: "msg-first" } } });
    const { client, close } = kind.create(IntegrationService, setup.service.baseUrl);
    try {
      // One send per 100 seconds: the first test takes the only token.
      const id = await storeIntegration(client, { baseUrl: setup.gateway.url(path), maxSendsPerSecond: 0.01 });
      const request = { target: { case: "integrationId" as const, value: id }, ...MESSAGE, send: true };

      const first = await client.testIntegration(request);
      const second = await client.testIntegration(request);

      expect(first.sendResult?.accepted).toBe(true);
      const result = second.sendResult;
      expect(result?.accepted).toBe(false);
      expect(result?.failure?.code).toBe("RESOURCE_EXHAUSTED");
      expect(result?.failure?.errorInfo?.reason).toBe("RATE_LIMITED");
      expect(result?.failure?.errorInfo?.metadata).toEqual({ integration_id: id, limit: "0.01" });
      expect(Number(result?.failure?.retryDelay?.seconds ?? 0)).toBeGreaterThan(0);
      expect(result?.failure?.stage).toBe(GatewayStage.UNSPECIFIED);
      expect(result?.attempts).toBe(0);
      expect(setup.gateway.requestsTo(path)).toHaveLength(1);
    } finally {
      close();
    }
  });

  test("blocked URL fails in the response, no connection", async () => {
    const host = `send-blocked-${slug}.example.com`;
    const path = uniquePath("sms");
    setup.resolver.reset(host, "127.0.0.1");
    const { client, close } = kind.create(IntegrationService, setup.service.baseUrl);
    try {
      const id = await storeIntegration(client, { baseUrl: `http://${host}:${setup.gatewayPort}${path}` });
      setup.resolver.reset(host, "127.0.0.2");

      const response = await client.testIntegration({ target: { case: "integrationId", value: id }, ...MESSAGE, send: true });

      const result = response.sendResult;
      expect(result?.accepted).toBe(false);
      expect(result?.failure?.code).toBe("PERMISSION_DENIED");
      expect(result?.failure?.errorInfo?.reason).toBe("OUTBOUND_ADDRESS_BLOCKED");
      expect(result?.failure?.errorInfo?.metadata).toEqual({
        field: "integration.base_url",
        host,
        address: "127.0.0.2",
        range: "loopback",
      });
      expect(result?.failure?.message).toMatch(/^integration\.base_url: host /);
      expect(setup.gateway.requestsTo(path)).toHaveLength(0);
      expect(setup.trapConnections()).toBe(0);
    } finally {
      close();
    }
  });
});

describe("reply excerpt", () => {
  test("is cut at 1 KiB", async () => {
    const path = uniquePath("sms");
    const padding = "x".repeat(3000);
    setup.gateway.on(path, { json: { data: { id: "msg-long" }, padding } });
    const { client, close } = CLIENT_KINDS[0]!.create(IntegrationService, setup.service.baseUrl);
    try {
      const id = await storeIntegration(client, { baseUrl: setup.gateway.url(path) });

      const response = await client.testIntegration({ target: { case: "integrationId", value: id }, ...MESSAGE, send: true });

      expect(response.sendResult?.id).toBe("msg-long");
      expect(response.sendResult?.replyTruncated).toBe(true);
      expect(response.sendResult?.replyExcerpt).toBe(JSON.stringify({ data: { id: "msg-long" }, padding }).slice(0, 1024));
    } finally {
      close();
    }
  });
});

describe("flow control of unsaved edits", () => {
  test("failed edit tests leave the stored circuit closed", async () => {
    const storedPath = uniquePath("sms");
    const editedPath = uniquePath("sms");
    setup.gateway.on(storedPath, { json: { data: { id: "msg-stored" } } });
    setup.gateway.on(editedPath, { status: 503, json: { error: "down" } });
    const integrations = CLIENT_KINDS[0]!.create(IntegrationService, setup.service.baseUrl);
    const sms = CLIENT_KINDS[0]!.create(SmsService, setup.service.baseUrl);
    try {
      const id = await storeIntegration(integrations.client, { baseUrl: setup.gateway.url(storedPath) });
      const edit = {
        target: { case: "integration" as const, value: { id, baseUrl: setup.gateway.url(editedPath) } },
        updateMask: { paths: ["base_url"] },
        ...MESSAGE,
        send: true,
      };

      // The default CIRCUIT_FAILURE_THRESHOLD is 5, so six failures open a circuit that counts them.
      const results = [];
      for (let attempt = 0; attempt < 6; attempt++) {
        results.push((await integrations.client.testIntegration(edit)).sendResult);
      }
      const sent = await sms.client.sendSms({ integrationId: id, ...MESSAGE });

      expect(results.slice(0, 5).map((result) => result?.failure?.code)).toEqual(Array(5).fill("UNAVAILABLE"));
      expect(results[5]?.failure?.message).toContain(`circuit breaker of integration "${id} (unsaved)" is open`);
      expect(sent.id).toBe("msg-stored");
      expect(setup.gateway.requestsTo(storedPath)).toHaveLength(1);
    } finally {
      integrations.close();
      sms.close();
    }
  });

  test("test send makes one attempt", async () => {
    const path = uniquePath("sms");
    const authPath = uniquePath("auth");
    setup.gateway.on(authPath, { json: { data: { "X-Token": TOKEN } } });
    setup.gateway.on(path, { status: 503, headers: { "retry-after": "1" }, json: { error: "busy" } });
    const { client, close } = CLIENT_KINDS[0]!.create(IntegrationService, setup.service.baseUrl);
    try {
      const id = await storeIntegration(client, tokenIntegration(setup.gateway, path, authPath));
      const request = { target: { case: "integrationId" as const, value: id }, ...MESSAGE, send: true };

      const first = (await client.testIntegration(request)).sendResult;
      const second = (await client.testIntegration(request)).sendResult;

      // SendSms would retry this 503 after the 1 s of its Retry-After, with its cached token.
      expect(first?.failure?.code).toBe("UNAVAILABLE");
      expect(first?.failure?.message).toContain("Retry after 1 second");
      expect(first?.attempts).toBe(1);
      expect(second?.attempts).toBe(1);
      expect(setup.gateway.requestsTo(path)).toHaveLength(2);
      expect(setup.gateway.requestsTo(authPath)).toHaveLength(2);
    } finally {
      close();
    }
  });
});
