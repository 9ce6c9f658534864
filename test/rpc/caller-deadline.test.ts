import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, expect, test } from "vitest";
import { IntegrationService } from "../../gen/smsgateway/v1/integration_service_pb.js";
import { SmsService } from "../../gen/smsgateway/v1/sms_service_pb.js";
import { CLIENT_KINDS } from "../helpers/clients.js";
import { ScriptedGateway } from "../helpers/scripted-gateway.js";
import { startTestService, type TestService } from "../helpers/service.js";

let service: TestService;
let gateway: ScriptedGateway;
let integrationId: string;

beforeAll(async () => {
  service = await startTestService();
  gateway = await ScriptedGateway.start();
  gateway.on("/hang", { hang: true });
  const { client, close } = CLIENT_KINDS[0]!.create(IntegrationService, service.baseUrl);
  const { integration } = await client.configureIntegration({
    integration: { baseUrl: gateway.url("/hang"), apiKeyHeader: "X-API-KEY", apiKey: "deadline-key-1234", defaultSender: "Acme" },
  });
  close();
  integrationId = integration?.id ?? "";
});

afterAll(async () => {
  await service.stop();
  await gateway.close();
});

/** Returns the code of the service's RPC log line for the request with this id. */
function loggedCode(requestId: string): unknown {
  return service.logLines.find((line) => line.requestId === requestId && line.msg === "rpc failed")?.code;
}

test("Connect deadline header gives DEADLINE_EXCEEDED", async () => {
  const requestId = "deadline-connect-json";
  const response = await fetch(`${service.baseUrl}/smsgateway.v1.SmsService/SendSms`, {
    method: "POST",
    headers: { "content-type": "application/json", "connect-timeout-ms": "300", "x-request-id": requestId },
    body: JSON.stringify({ integrationId, to: "+15550001111", content: "hi" }),
  });
  const body = (await response.json()) as { code: string };

  expect(body.code).toBe("deadline_exceeded");
  expect(loggedCode(requestId)).toBe("DEADLINE_EXCEEDED");
});

// A client with a deadline resets the call when its own timer fires, so the
// service sees a cancel a moment before its deadline. It logs that as the
// deadline when it comes close enough to it, which a loaded machine can miss.
test.each(CLIENT_KINDS)("$name deadline is logged", async (kind) => {
  const requestId = `deadline-${kind.name.replace(/\W+/g, "-")}`;
  const { client, close } = kind.create(SmsService, service.baseUrl);
  try {
    const error = await client
      .sendSms({ integrationId, to: "+15550001111", content: "hi" }, { timeoutMs: 300, headers: { "x-request-id": requestId } })
      .then(
        () => undefined,
        (thrown: unknown) => ConnectError.from(thrown),
      );
    expect(error?.code).toBe(Code.DeadlineExceeded);

    await expect.poll(() => loggedCode(requestId), { timeout: 5_000 }).toBeDefined();
    expect(["DEADLINE_EXCEEDED", "CANCELLED"]).toContain(loggedCode(requestId));
  } finally {
    close();
  }
});
