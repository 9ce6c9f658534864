import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, expect, test } from "vitest";
import { IntegrationService } from "../../gen/smsgateway/v1/integration_service_pb.js";
import { SmsService } from "../../gen/smsgateway/v1/sms_service_pb.js";
import { ScriptedGateway } from "../helpers/scripted-gateway.js";
import { startTestService, type TestService } from "../helpers/service.js";

let service: TestService;
let gateway: ScriptedGateway;

beforeAll(async () => {
  service = await startTestService();
  gateway = await ScriptedGateway.start();
  gateway.otherwise({ json: { data: { id: "gw-1", date: "2026-01-02T03:04:05Z" } } });
});

afterAll(async () => {
  await service.stop();
  await gateway.close();
});

test("sends see integration changes at once", async () => {
  const transport = createConnectTransport({ baseUrl: service.baseUrl, httpVersion: "2" });
  const integrations = createClient(IntegrationService, transport);
  const sms = createClient(SmsService, transport);
  const { integration } = await integrations.configureIntegration({
    integration: { baseUrl: gateway.url("/first"), apiKeyHeader: "X-API-KEY", apiKey: "cache-key-0001", defaultSender: "Before" },
  });
  const id = integration?.id ?? "";
  const send = () => sms.sendSms({ integrationId: id, to: "+15550003331", content: "cache check" });

  await send();
  await integrations.configureIntegration({
    integration: { id, baseUrl: gateway.url("/second"), defaultSender: "After" },
    updateMask: { paths: ["base_url", "default_sender"] },
  });
  await send();
  await integrations.deleteIntegration({ id });
  const afterDelete = await send().then(
    () => undefined,
    (error: unknown) => ConnectError.from(error),
  );

  const [first, second] = gateway.requests;
  expect(first?.url).toBe("/first");
  expect(JSON.parse(first?.body ?? "{}").sender).toBe("Before");
  expect(second?.url).toBe("/second");
  expect(JSON.parse(second?.body ?? "{}").sender).toBe("After");
  expect(gateway.requests).toHaveLength(2);
  expect(afterDelete?.code).toBe(Code.NotFound);
});
