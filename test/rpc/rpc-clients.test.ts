import http from "node:http";
import type { AddressInfo } from "node:net";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { BadRequestSchema, GatewayErrorSchema, GatewayStage } from "../../gen/smsgateway/v1/errors_pb.js";
import { IntegrationService } from "../../gen/smsgateway/v1/integration_service_pb.js";
import { DateSource, SmsService } from "../../gen/smsgateway/v1/sms_service_pb.js";
import { startLocalGateway } from "../../src/tools/local-gateway.js";
import { CLIENT_KINDS, rejection } from "../helpers/clients.js";
import { startTestService, type TestService } from "../helpers/service.js";

let service: TestService;
let gatewayUrl: string;
let refusingGatewayUrl: string;
const received: string[] = [];
const servers: http.Server[] = [];

beforeAll(async () => {
  service = await startTestService();
  const gateway = await startLocalGateway({ host: "127.0.0.1", port: 0 }, (line) => received.push(line));
  servers.push(gateway.server);
  gatewayUrl = gateway.url;

  const refusing = http.createServer((_request, response) => {
    response.writeHead(401, { "content-type": "application/json" });
    response.end(JSON.stringify({ error: "invalid api key" }));
  });
  await new Promise<void>((resolve) => refusing.listen(0, "127.0.0.1", resolve));
  servers.push(refusing);
  refusingGatewayUrl = `http://127.0.0.1:${(refusing.address() as AddressInfo).port}/sms`;
});

afterAll(async () => {
  await service.stop();
  for (const server of servers) {
    server.closeAllConnections();
    server.close();
  }
});

describe.each(CLIENT_KINDS)("$name", (kind) => {
  test("every RPC, from create to delete", async () => {
    const integrations = kind.create(IntegrationService, service.baseUrl);
    const sms = kind.create(SmsService, service.baseUrl);
    try {
      const configured = await integrations.client.configureIntegration({
        integration: {
          displayName: `via ${kind.name}`,
          baseUrl: `${gatewayUrl}/sms`,
          apiKeyHeader: "X-API-KEY",
          apiKey: "live_key_0123456789",
          defaultSender: "Acme",
        },
      });
      expect(configured.created).toBe(true);
      const id = configured.integration?.id ?? "";
      expect(id).toMatch(/^int_/);
      expect(configured.integration?.apiKey).toBe("");
      expect(configured.integration?.apiKeyHint).toBe("****6789");
      expect(configured.integration?.idPath).toBe("data.id");

      const sent = await sms.client.sendSms({ integrationId: id, to: "+15551234567", content: "Your code is 123456" });
      expect(sent.id).toMatch(/^msg_/);
      expect(sent.gatewayStatus).toBe(200);
      expect(sent.attempts).toBe(1);
      expect(sent.dateSource).toBe(DateSource.GATEWAY);
      expect(sent.warnings).toEqual([]);
      expect(received.some((line) => line.includes(sent.id) && line.includes("+15551234567"))).toBe(true);

      const updated = await integrations.client.configureIntegration({
        integration: { id, defaultSender: "AcmeBank" },
        updateMask: { paths: ["default_sender"] },
      });
      expect(updated.created).toBe(false);
      expect(updated.integration?.defaultSender).toBe("AcmeBank");
      expect(updated.integration?.apiKeyHint).toBe("****6789");

      const read = await integrations.client.getIntegration({ id });
      expect(read.integration?.defaultSender).toBe("AcmeBank");
      expect(read.integration?.baseUrl).toBe(`${gatewayUrl}/sms`);

      const listed = await integrations.client.listIntegrations({ pageSize: 1000 });
      expect(listed.integrations.map((i) => i.id)).toContain(id);

      await integrations.client.deleteIntegration({ id });
      const missing = await rejection(integrations.client.getIntegration({ id }));
      expect(missing.code).toBe(Code.NotFound);
    } finally {
      integrations.close();
      sms.close();
    }
  });

  test("bad input carries the field", async () => {
    const integrations = kind.create(IntegrationService, service.baseUrl);
    try {
      const error = await rejection(
        integrations.client.configureIntegration({ integration: { baseUrl: "ftp://example.test", apiKeyHeader: "X-Key", apiKey: "k" } }),
      );
      expect(error.code).toBe(Code.InvalidArgument);
      const fields = error.findDetails(BadRequestSchema).flatMap((detail) => detail.fieldViolations.map((v) => v.field));
      expect(fields).toEqual(["integration.base_url", "integration.default_sender"]);
    } finally {
      integrations.close();
    }
  });

  test("gateway refusal carries status and body", async () => {
    const integrations = kind.create(IntegrationService, service.baseUrl);
    const sms = kind.create(SmsService, service.baseUrl);
    try {
      const { integration } = await integrations.client.configureIntegration({
        integration: { baseUrl: refusingGatewayUrl, apiKeyHeader: "X-API-KEY", apiKey: "wrong-key-1234", defaultSender: "Acme" },
      });
      const error = await rejection(sms.client.sendSms({ integrationId: integration?.id ?? "", to: "+15550000001", content: "hi" }));
      expect(error.code).toBe(Code.FailedPrecondition);
      expect(error.rawMessage).toMatch(/credentials/i);
      const [detail] = error.findDetails(GatewayErrorSchema);
      expect(detail?.httpStatus).toBe(401);
      expect(detail?.stage).toBe(GatewayStage.SEND);
      expect(detail?.bodyExcerpt).toContain("invalid api key");
    } finally {
      integrations.close();
      sms.close();
    }
  });
});

describe("service state", () => {
  test("restart keeps integrations", async () => {
    const first = await startTestService();
    const kind = CLIENT_KINDS[0]!;
    const before = kind.create(IntegrationService, first.baseUrl);
    const { integration } = await before.client.configureIntegration({
      integration: { baseUrl: `${gatewayUrl}/sms`, apiKeyHeader: "X-API-KEY", apiKey: "persisted-key", defaultSender: "Acme" },
    });
    await first.app.close(1_000);

    const second = await startTestService({ dataDir: first.dataDir });
    try {
      const after = kind.create(IntegrationService, second.baseUrl);
      const read = await after.client.getIntegration({ id: integration?.id ?? "" });
      expect(read.integration?.baseUrl).toBe(`${gatewayUrl}/sms`);
      expect(read.integration?.apiKeyHint).toBe("****-key");
    } finally {
      await second.stop();
      await first.stop().catch(() => undefined);
    }
  });

  test("one log line per RPC, no secrets", async () => {
    const rpcLines = service.logLines.filter((line) => line.msg === "rpc finished" || line.msg === "rpc failed");
    expect(rpcLines.length).toBeGreaterThan(0);
    for (const line of rpcLines) {
      expect(line).toHaveProperty("procedure");
      expect(line).toHaveProperty("code");
      expect(line).toHaveProperty("durationMs");
    }
    const allText = JSON.stringify(service.logLines);
    expect(allText).not.toContain("live_key_0123456789");
    expect(allText).not.toContain("wrong-key-1234");
    expect(allText).not.toContain("+15551234567");
  });
});
