import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
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

/** Runs `buf curl` against the test service; it reads the schema through server reflection. */
async function bufCurl(procedure: string, body: unknown, protocolArgs: string[]): Promise<Record<string, unknown>> {
  const { stdout } = await run(
    BUF,
    ["curl", ...protocolArgs, "--data", JSON.stringify(body), `${service.baseUrl}/${procedure}`],
    { timeout: 30_000 },
  );
  return JSON.parse(stdout) as Record<string, unknown>;
}

/** Runs `buf curl` with a listing flag and returns the lines it prints. */
async function bufCurlList(flag: "--list-services" | "--list-methods"): Promise<string[]> {
  const { stdout } = await run(BUF, ["curl", "--http2-prior-knowledge", flag, service.baseUrl], { timeout: 30_000 });
  return stdout.split("\n").filter((line) => line !== "");
}

test("buf curl lists services through reflection", async () => {
  expect(await bufCurlList("--list-services")).toEqual([
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
    "smsgateway.v1.IntegrationService",
    "smsgateway.v1.SmsService",
  ]);
});

test("buf curl lists methods through reflection", async () => {
  const methods = await bufCurlList("--list-methods");

  expect(methods).toContain("smsgateway.v1.SmsService/SendSms");
  expect(methods).toContain("smsgateway.v1.IntegrationService/GetIntegration");
  expect(methods).toContain("grpc.health.v1.Health/Watch");
});

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

  const read = await bufCurl("smsgateway.v1.IntegrationService/GetIntegration", { id: integration.id }, ["--http2-prior-knowledge"]);
  expect(read.integration).toMatchObject({ id: integration.id, apiKeyHint: "****0001", defaultSender: "Acme" });
});

test("buf curl shows the error code", async () => {
  const failure = await bufCurl("smsgateway.v1.IntegrationService/GetIntegration", { id: "int_missing" }, ["--protocol", "grpcweb"]).then(
    () => undefined,
    (error: { stderr: string }) => error,
  );

  expect(failure?.stderr).toContain('"code": "not_found"');
});

/** The `--data` payloads of the README's `buf curl` calls of TestIntegration, in order. */
const README_TEST_PAYLOADS = [...readFileSync("README.md", "utf8").matchAll(/--data '([^']*)' \\\n\s*\S*\/TestIntegration\n/g)].map(
  (match) => JSON.parse(match[1]!) as Record<string, unknown>,
);

describe("README TestIntegration examples", () => {
  const procedure = "smsgateway.v1.IntegrationService/TestIntegration";
  const grpc = ["--http2-prior-knowledge"];

  beforeAll(async () => {
    await bufCurl(
      "smsgateway.v1.IntegrationService/ConfigureIntegration",
      {
        integration: { id: "demo", baseUrl: `${gateway.url}/sms`, apiKeyHeader: "X-API-KEY", apiKey: "demo-key-0123456789", defaultSender: "Acme" },
        allowMissing: true,
      },
      grpc,
    );
  });

  test("README has a dry run and a test send", () => {
    expect(README_TEST_PAYLOADS).toEqual([
      { integrationId: "demo" },
      { integrationId: "demo", to: "+15551234567", content: "Test from buf curl", send: true },
    ]);
  });

  test("README dry run shows the masked request", async () => {
    const receivedBefore = received.length;

    const response = await bufCurl(procedure, README_TEST_PAYLOADS[0]!, grpc);

    expect(response.smsRequest).toMatchObject({ method: "POST", url: `${gateway.url}/sms` });
    expect(JSON.stringify(response)).toContain("****6789");
    expect(JSON.stringify(response)).not.toContain("demo-key-0123456789");
    expect(response.outboundChecks).toEqual([
      { field: "integration.base_url", url: `${gateway.url}/sms`, verdict: "OUTBOUND_VERDICT_ALLOWED", addresses: ["127.0.0.1"] },
    ]);
    expect(response.placeholderFields).toEqual(["to", "content"]);
    expect(received).toHaveLength(receivedBefore);
  });

  test("README test send shows the gateway's id", async () => {
    const receivedBefore = received.length;

    const response = await bufCurl(procedure, README_TEST_PAYLOADS[1]!, grpc);

    const result = response.sendResult as Record<string, unknown>;
    expect(result.accepted).toBe(true);
    expect(String(result.id)).toMatch(/^msg_/);
    expect(result.gatewayStatus).toBe(200);
    expect(received).toHaveLength(receivedBefore + 1);
    expect(received.at(-1)).toContain(`-> id ${String(result.id)}`);
  });
});
