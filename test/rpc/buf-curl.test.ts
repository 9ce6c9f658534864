import { execFile } from "node:child_process";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, expect, test } from "vitest";
import { startLocalGateway } from "../../src/tools/local-gateway.js";
import { startTestService, type TestService } from "../helpers/service.js";

const run = promisify(execFile);
const BUF = path.resolve("node_modules/.bin/buf");

let service: TestService;
let gateway: Awaited<ReturnType<typeof startLocalGateway>>;
const received: string[] = [];

beforeAll(async () => {
  service = await startTestService();
  gateway = await startLocalGateway({ host: "127.0.0.1", port: 0 }, (line) => received.push(line));
});

afterAll(async () => {
  await service.stop();
  gateway.server.close();
});

/** Runs `buf curl` against the test service with the schema read from proto/. */
async function bufCurl(procedure: string, body: unknown, protocolArgs: string[]): Promise<Record<string, unknown>> {
  const { stdout } = await run(
    BUF,
    ["curl", "--schema", "proto", ...protocolArgs, "--data", JSON.stringify(body), `${service.baseUrl}/${procedure}`],
    { timeout: 30_000 },
  );
  return JSON.parse(stdout) as Record<string, unknown>;
}

test("buf curl configures and sends over gRPC and Connect", async () => {
  const configured = await bufCurl(
    "smsgateway.v1.IntegrationService/ConfigureIntegration",
    { integration: { baseUrl: `${gateway.url}/sms`, apiKeyHeader: "X-API-KEY", apiKey: "curl-key-0001", defaultSender: "Acme" } },
    ["--protocol", "grpc", "--http2-prior-knowledge"],
  );
  const integration = configured.integration as Record<string, string>;
  expect(integration.id).toMatch(/^int_/);

  const sent = await bufCurl(
    "smsgateway.v1.SmsService/SendSms",
    { integrationId: integration.id, to: "+15557654321", content: "hello from buf curl" },
    ["--protocol", "connect"],
  );
  expect(String(sent.id)).toMatch(/^msg_/);
  expect(received.some((line) => line.includes(String(sent.id)))).toBe(true);
});

test("buf curl shows the error code", async () => {
  const failure = await bufCurl("smsgateway.v1.IntegrationService/GetIntegration", { id: "int_missing" }, ["--protocol", "grpcweb"]).then(
    () => undefined,
    (error: { stderr: string }) => error,
  );

  expect(failure?.stderr).toContain('"code": "not_found"');
});
