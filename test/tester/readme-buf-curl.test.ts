import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { promisify } from "node:util";

import { afterAll, beforeAll, expect, test } from "vitest";

import { IntegrationService } from "../../gen/smsgateway/v1/integration_service_pb.js";
import { startLocalGateway } from "../../src/tools/local-gateway.js";
import { CLIENT_KINDS } from "../helpers/clients.js";
import { startTestService, type TestService } from "../helpers/service.js";

const run = promisify(execFile);
const BUF = path.resolve("node_modules/.bin/buf");

/** The `--data` payloads of the README's `buf curl` calls of TestIntegration, in order. */
const README_PAYLOADS = [...readFileSync("README.md", "utf8").matchAll(/--data '([^']*)' \\\n\s*\S*\/TestIntegration\n/g)].map(
  (match) => JSON.parse(match[1]!) as Record<string, unknown>,
);

let service: TestService;
let gateway: Awaited<ReturnType<typeof startLocalGateway>>;
const received: string[] = [];

beforeAll(async () => {
  service = await startTestService();
  gateway = await startLocalGateway({ host: "127.0.0.1", port: 0 }, (line) => received.push(line));
  const { client, close } = CLIENT_KINDS[0]!.create(IntegrationService, service.baseUrl);
  await client.configureIntegration({
    integration: { id: "demo", baseUrl: `${gateway.url}/sms`, apiKeyHeader: "X-API-KEY", apiKey: "demo-key-0123456789", defaultSender: "Acme" },
    allowMissing: true,
  });
  close();
});

afterAll(async () => {
  await service.stop();
  gateway.server.close();
});

/** Runs `buf curl` over gRPC as the README does. It reads the schema through server reflection. */
async function bufCurl(body: Record<string, unknown>): Promise<Record<string, unknown>> {
  const url = `${service.baseUrl}/smsgateway.v1.IntegrationService/TestIntegration`;
  const { stdout } = await run(BUF, ["curl", "--http2-prior-knowledge", "--data", JSON.stringify(body), url], { timeout: 30_000 });
  return JSON.parse(stdout) as Record<string, unknown>;
}

test("README has a dry run and a test send", () => {
  expect(README_PAYLOADS).toEqual([
    { integrationId: "demo" },
    { integrationId: "demo", to: "+15551234567", content: "Test from buf curl", send: true },
  ]);
});

test("README dry run shows the masked request", async () => {
  const response = await bufCurl(README_PAYLOADS[0]!);

  expect(response.smsRequest).toMatchObject({ method: "POST", url: `${gateway.url}/sms` });
  expect(JSON.stringify(response)).toContain("****6789");
  expect(JSON.stringify(response)).not.toContain("demo-key-0123456789");
  expect(response.outboundChecks).toEqual([
    { field: "integration.base_url", url: `${gateway.url}/sms`, verdict: "OUTBOUND_VERDICT_ALLOWED", addresses: ["127.0.0.1"] },
  ]);
  expect(response.placeholderFields).toEqual(["to", "content"]);
  expect(received).toEqual([]);
});

test("README test send shows the gateway's id", async () => {
  const response = await bufCurl(README_PAYLOADS[1]!);

  const result = response.sendResult as Record<string, unknown>;
  expect(result.accepted).toBe(true);
  expect(String(result.id)).toMatch(/^msg_1_/);
  expect(result.gatewayStatus).toBe(200);
  expect(received).toHaveLength(1);
  expect(received[0]).toContain(`-> id ${String(result.id)}`);
});
