import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { IntegrationService } from "../../gen/smsgateway/v1/integration_service_pb.js";
import { SmsService } from "../../gen/smsgateway/v1/sms_service_pb.js";
import { ServiceMetrics } from "../../src/observability/metrics.js";
import { sample } from "../helpers/prometheus.js";
import { ScriptedGateway } from "../helpers/scripted-gateway.js";
import { startTestService, type TestService } from "../helpers/service.js";

let service: TestService;
let gateway: ScriptedGateway;
let integrations: ReturnType<typeof createClient<typeof IntegrationService>>;
let sms: ReturnType<typeof createClient<typeof SmsService>>;

const API_KEY = "metrics-key-5d2e91";
const PHONE = "+15557770123";

beforeAll(async () => {
  service = await startTestService();
  gateway = await ScriptedGateway.start();
  const transport = createConnectTransport({ baseUrl: service.baseUrl, httpVersion: "2" });
  integrations = createClient(IntegrationService, transport);
  sms = createClient(SmsService, transport);
});

afterAll(async () => {
  await service.stop();
  await gateway.close();
});

async function configure(path: string, token?: { authPath: string }): Promise<string> {
  const { integration } = await integrations.configureIntegration({
    integration: {
      baseUrl: gateway.url(path),
      apiKeyHeader: "X-API-KEY",
      apiKey: API_KEY,
      defaultSender: "Acme",
      ...(token === undefined ? {} : { authenticateByToken: true, authUrl: gateway.url(token.authPath), tokenKey: "token" }),
    },
  });
  return integration?.id ?? "";
}

async function scrape(): Promise<string> {
  const response = await fetch(`${service.baseUrl}/metrics`);
  expect(response.status).toBe(200);
  expect(response.headers.get("content-type")).toContain("text/plain");
  return response.text();
}

describe("GET /metrics", () => {
  test("counts RPCs and webhook attempts", async () => {
    gateway.on("/ok", { json: { data: { id: "m-1" } } });
    gateway.on("/down", { status: 500, json: { error: "maintenance" } });
    const ok = await configure("/ok");
    const down = await configure("/down");

    await sms.sendSms({ integrationId: ok, to: PHONE, content: "one" });
    await sms.sendSms({ integrationId: ok, to: PHONE, content: "two" });
    await sms.sendSms({ integrationId: down, to: PHONE, content: "three" }).catch(() => undefined);
    const text = await scrape();

    expect(sample(text, "smsgateway_webhook_attempts_total", { integration_id: ok, outcome: "ok" })).toBe(2);
    expect(sample(text, "smsgateway_webhook_attempts_total", { integration_id: down, outcome: "unavailable" })).toBe(1);
    expect(sample(text, "smsgateway_webhook_duration_seconds_count", { integration_id: ok })).toBe(2);
    const sendSms = { service: "smsgateway.v1.SmsService", method: "SendSms" };
    expect(sample(text, "smsgateway_rpcs_total", { ...sendSms, code: "OK" })).toBe(2);
    expect(sample(text, "smsgateway_rpcs_total", { ...sendSms, code: "UNAVAILABLE" })).toBe(1);
    expect(sample(text, "smsgateway_rpc_duration_seconds_count", { ...sendSms, code: "OK" })).toBe(2);
    expect(sample(text, "smsgateway_rpcs_total", { service: "smsgateway.v1.IntegrationService", method: "ConfigureIntegration", code: "OK" })).toBeGreaterThanOrEqual(2);
    expect(sample(text, "smsgateway_sends_in_flight")).toBe(0);
  });

  test("counts token fetches by outcome", async () => {
    gateway.on("/token-sms", { json: { data: { id: "m-2" } } });
    gateway.on("/auth-good", { json: { data: { token: "tok-1" } } });
    gateway.on("/auth-empty", { json: { data: {} } });
    const good = await configure("/token-sms", { authPath: "/auth-good" });
    const empty = await configure("/token-sms", { authPath: "/auth-empty" });

    await sms.sendSms({ integrationId: good, to: PHONE, content: "token" });
    await sms.sendSms({ integrationId: empty, to: PHONE, content: "token" }).catch(() => undefined);
    const text = await scrape();

    expect(sample(text, "smsgateway_token_fetches_total", { integration_id: good, outcome: "ok" })).toBe(1);
    expect(sample(text, "smsgateway_token_fetches_total", { integration_id: empty, outcome: "invalid_auth_reply" })).toBe(1);
    expect(sample(text, "smsgateway_webhook_attempts_total", { integration_id: empty })).toBeUndefined();
  });

  test("shows sends in flight", async () => {
    let release = () => {};
    const held = new Promise<void>((resolve) => (release = resolve));
    gateway.on("/slow", async () => {
      await held;
      return { json: { data: { id: "m-3" } } };
    });
    const slow = await configure("/slow");

    const sending = sms.sendSms({ integrationId: slow, to: PHONE, content: "slow" });
    for (let i = 0; i < 500 && gateway.requestsTo("/slow").length === 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    const during = await scrape();
    release();
    await sending;
    const after = await scrape();

    expect(sample(during, "smsgateway_sends_in_flight")).toBe(1);
    expect(sample(after, "smsgateway_sends_in_flight")).toBe(0);
  });

  test("has no phone numbers or secrets", async () => {
    const text = await scrape();

    expect(text).not.toContain("5557770123");
    expect(text).not.toContain(API_KEY);
    expect(text).not.toContain("tok-1");
    expect(text).toContain("process_cpu_seconds_total");
  });

  test("rejects other methods", async () => {
    const response = await fetch(`${service.baseUrl}/metrics`, { method: "POST", body: "x" });

    expect(response.status).toBe(405);
    expect(response.headers.get("allow")).toBe("GET, HEAD");
  });
});

describe("ServiceMetrics hooks", () => {
  test("circuit state keeps one state at 1", async () => {
    const metrics = new ServiceMetrics();

    metrics.circuitState("int_a", "closed");
    metrics.circuitState("int_a", "open");
    const text = await metrics.render();

    expect(sample(text, "smsgateway_circuit_state", { integration_id: "int_a", state: "open" })).toBe(1);
    expect(sample(text, "smsgateway_circuit_state", { integration_id: "int_a", state: "closed" })).toBe(0);
    expect(sample(text, "smsgateway_circuit_state", { integration_id: "int_a", state: "half_open" })).toBe(0);
  });

  test("flow states are read at each scrape", async () => {
    const metrics = new ServiceMetrics();
    let states = [{ integrationId: "int_w", circuit: "half_open" as const, waiting: 3 }];
    metrics.observeFlowStates(() => states);

    const during = await metrics.render();
    states = [];
    const after = await metrics.render();

    expect(sample(during, "smsgateway_sends_waiting", { integration_id: "int_w" })).toBe(3);
    expect(sample(during, "smsgateway_circuit_state", { integration_id: "int_w", state: "half_open" })).toBe(1);
    expect(after).not.toContain('integration_id="int_w"');
  });

  test("counts retries and SSRF refusals", async () => {
    const metrics = new ServiceMetrics();

    metrics.webhookRetry("int_b", "unavailable");
    metrics.webhookRetry("int_b", "unavailable");
    metrics.ssrfRefusal("", "link_local");
    const text = await metrics.render();

    expect(sample(text, "smsgateway_webhook_retries_total", { integration_id: "int_b", reason: "unavailable" })).toBe(2);
    expect(sample(text, "smsgateway_ssrf_refusals_total", { integration_id: "", reason: "link_local" })).toBe(1);
  });

  test("ends a send once", async () => {
    const metrics = new ServiceMetrics();

    const first = metrics.sendStarted();
    metrics.sendStarted();
    first();
    first();

    expect(sample(await metrics.render(), "smsgateway_sends_in_flight")).toBe(1);
  });

  test("leaves out process metrics unless asked", async () => {
    expect(await new ServiceMetrics().render()).not.toContain("process_cpu_seconds_total");
  });
});

describe("GET /metrics wiring", () => {
  test("circuit state follows flow control", async () => {
    const local = await startTestService({ circuitFailureThreshold: 2, circuitOpenMs: 60_000 });
    try {
      gateway.on("/broken", { status: 500, json: { error: "down" } });
      const transport = createConnectTransport({ baseUrl: local.baseUrl, httpVersion: "2" });
      const localIntegrations = createClient(IntegrationService, transport);
      const localSms = createClient(SmsService, transport);
      const { integration } = await localIntegrations.configureIntegration({
        integration: { baseUrl: gateway.url("/broken"), apiKeyHeader: "X-API-KEY", apiKey: API_KEY, defaultSender: "Acme" },
      });
      const id = integration?.id ?? "";

      for (let i = 0; i < 2; i++) {
        await localSms.sendSms({ integrationId: id, to: PHONE, content: "x" }).catch(() => undefined);
      }
      const response = await fetch(`${local.baseUrl}/metrics`);
      const text = await response.text();

      expect(sample(text, "smsgateway_circuit_state", { integration_id: id, state: "open" })).toBe(1);
      expect(sample(text, "smsgateway_circuit_state", { integration_id: id, state: "closed" })).toBe(0);
    } finally {
      await local.stop();
    }
  });

  test("SSRF refusals at save are counted", async () => {
    await integrations
      .configureIntegration({
        integration: { baseUrl: "http://169.254.169.254/latest", apiKeyHeader: "X-API-KEY", apiKey: API_KEY, defaultSender: "Acme" },
      })
      .catch(() => undefined);
    const text = await scrape();

    expect(sample(text, "smsgateway_ssrf_refusals_total", { integration_id: "", reason: "OUTBOUND_ADDRESS_BLOCKED" })).toBe(1);
  });
});
