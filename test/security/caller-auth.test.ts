import { execFile } from "node:child_process";
import { mkdtemp, rm, stat } from "node:fs/promises";
import type http from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";

import { Code, type ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { serviceNodeArgs } from "../../bench/start-command.js";
import { IntegrationService } from "../../gen/smsgateway/v1/integration_service_pb.js";
import { SmsService } from "../../gen/smsgateway/v1/sms_service_pb.js";
import { startApp } from "../../src/app.js";
import { ConfigError } from "../../src/config/load-config.js";
import { prepareSecurity } from "../../src/security/security-setup.js";
import { startLocalGateway } from "../../src/tools/local-gateway.js";
import { TEST_BUNDLE } from "../helpers/build-bundle.js";
import { CLIENT_KINDS } from "../helpers/clients.js";
import { startTestService, testConfig, type TestService } from "../helpers/service.js";
import { silentLogger } from "../store/integration-fixtures.js";
import { createApiKey, rejection } from "./security-fixtures.js";

const run = promisify(execFile);


const admin = createApiKey("admin", "integrations:read+integrations:write");
const reader = createApiKey("reader", "integrations:read");
const sender = createApiKey("sender", "sms:send");
const ALL_KEYS = [admin, reader, sender];

let service: TestService;
let gatewayServer: http.Server;
let gatewayUrl: string;
let integrationId: string;

/** Returns call options that send `authorization: Bearer <key>`. */
function bearer(key: string): { headers: Record<string, string> } {
  return { headers: { authorization: `Bearer ${key}` } };
}

/**
 * Returns the error message as the server wrote it. The server
 * percent-encodes grpc-message with encodeURIComponent, and grpc-js 1.14
 * decodes it with decodeURI, which leaves escapes such as %3A for ":".
 */
function messageOf(error: ConnectError): string {
  return decodeURIComponent(error.rawMessage);
}

beforeAll(async () => {
  service = await startTestService({ apiKeys: ALL_KEYS.map((key) => key.entry).join(",") });
  const gateway = await startLocalGateway({ host: "127.0.0.1", port: 0 }, () => undefined);
  gatewayServer = gateway.server;
  gatewayUrl = gateway.url;

  const { client } = CLIENT_KINDS[0]!.create(IntegrationService, service.baseUrl);
  const { integration } = await client.configureIntegration(
    { integration: { baseUrl: `${gatewayUrl}/sms`, apiKeyHeader: "X-API-KEY", apiKey: "gateway-key-0001", defaultSender: "Acme" } },
    bearer(admin.key),
  );
  integrationId = integration?.id ?? "";
});

afterAll(async () => {
  await service.stop();
  gatewayServer.closeAllConnections();
  gatewayServer.close();
});

describe.each(CLIENT_KINDS)("$name", (kind) => {
  test("no key is UNAUTHENTICATED", async () => {
    const { client, close } = kind.create(IntegrationService, service.baseUrl);
    try {
      const error = await rejection(client.getIntegration({ id: integrationId }));

      expect(error.code).toBe(Code.Unauthenticated);
      expect(messageOf(error)).toContain('send the header "authorization: Bearer <API key>"');
    } finally {
      close();
    }
  });

  test("unknown key is UNAUTHENTICATED", async () => {
    const { client, close } = kind.create(IntegrationService, service.baseUrl);
    try {
      const error = await rejection(client.getIntegration({ id: integrationId }, bearer(`${reader.key}x`)));

      expect(error.code).toBe(Code.Unauthenticated);
      expect(messageOf(error)).toMatch(/^unknown API key/);
    } finally {
      close();
    }
  });

  test.each([`Basic ${Buffer.from("u:p").toString("base64")}`, "Bearer", "Bearer a b", reader.key, `Bearer ${reader.key};`])(
    "malformed header %j is UNAUTHENTICATED",
    async (header) => {
      const { client, close } = kind.create(IntegrationService, service.baseUrl);
      try {
        const error = await rejection(client.getIntegration({ id: integrationId }, { headers: { authorization: header } }));

        expect(error.code).toBe(Code.Unauthenticated);
        expect(messageOf(error)).toMatch(/^malformed authorization header: expected "Bearer <API key>"/);
        expect(messageOf(error)).not.toContain(reader.key);
      } finally {
        close();
      }
    },
  );

  test("wrong scope is PERMISSION_DENIED naming the scope", async () => {
    const integrations = kind.create(IntegrationService, service.baseUrl);
    const sms = kind.create(SmsService, service.baseUrl);
    try {
      const write = await rejection(integrations.client.deleteIntegration({ id: integrationId }, bearer(reader.key)));
      const read = await rejection(integrations.client.listIntegrations({}, bearer(sender.key)));
      const send = await rejection(sms.client.sendSms({ integrationId, to: "+15550001111", content: "hi" }, bearer(admin.key)));

      expect(write.code).toBe(Code.PermissionDenied);
      expect(messageOf(write)).toContain('API key "reader" lacks the scope integrations:write');
      expect(read.code).toBe(Code.PermissionDenied);
      expect(messageOf(read)).toContain("integrations:read");
      expect(send.code).toBe(Code.PermissionDenied);
      expect(messageOf(send)).toContain("sms:send, which smsgateway.v1.SmsService/SendSms needs");
    } finally {
      integrations.close();
      sms.close();
    }
  });

  test("right scope succeeds", async () => {
    const integrations = kind.create(IntegrationService, service.baseUrl);
    const sms = kind.create(SmsService, service.baseUrl);
    try {
      const read = await integrations.client.getIntegration({ id: integrationId }, bearer(reader.key));
      const sent = await sms.client.sendSms({ integrationId, to: "+15550001111", content: "hi" }, bearer(sender.key));
      const lowercase = await integrations.client.listIntegrations({}, { headers: { authorization: `bearer  ${admin.key}` } });

      expect(read.integration?.id).toBe(integrationId);
      expect(sent.id).toMatch(/^msg_/);
      expect(lowercase.integrations.map((integration) => integration.id)).toContain(integrationId);
    } finally {
      integrations.close();
      sms.close();
    }
  });
});

describe("authentication log", () => {
  test("names the caller and never the key", () => {
    const rpcLines = service.logLines.filter((line) => line.msg === "rpc finished" || line.msg === "rpc failed");
    const callers = new Set(rpcLines.map((line) => line.caller));

    expect(callers).toEqual(new Set(["admin", "reader", "sender", undefined]));
    expect(rpcLines.filter((line) => line.code === "OK").every((line) => typeof line.caller === "string")).toBe(true);
    expect(rpcLines).toContainEqual(expect.objectContaining({ code: "PERMISSION_DENIED", caller: "reader" }));
    const unauthenticated = rpcLines.filter((line) => line.code === "UNAUTHENTICATED");
    expect(unauthenticated.length).toBeGreaterThan(0);
    expect(unauthenticated.some((line) => "caller" in line)).toBe(false);
    const text = JSON.stringify(service.logLines);
    for (const { key } of ALL_KEYS) {
      expect(text).not.toContain(key);
      expect(text).not.toContain(key.slice("smsk_".length));
    }
  });

  test("start-up says authentication is on", () => {
    expect(service.logLines).toContainEqual(
      expect.objectContaining({ authentication: "on", apiKeys: ["admin", "reader", "sender"], source: "API_KEYS" }),
    );
  });
});

describe("listening without API keys", () => {
  test("loopback is allowed and logged as off", async () => {
    const open = await startTestService();
    try {
      expect(open.logLines).toContainEqual(expect.objectContaining({ authentication: "off", host: "127.0.0.1" }));
    } finally {
      await open.stop();
    }
  });

  test.each(["0.0.0.0", "::", "10.1.2.3", "gateway.internal"])("HOST %s is refused", async (host) => {
    const attempt = prepareSecurity(testConfig({ host, dataDir: "/nonexistent/unused" }), silentLogger());

    await expect(attempt).rejects.toBeInstanceOf(ConfigError);
    await expect(attempt).rejects.toThrow(`HOST ${host} accepts connections from other hosts, but no API_KEYS are configured`);
  });

  test("CORS_ALLOWED_ORIGINS is refused", async () => {
    const attempt = prepareSecurity(testConfig({ corsAllowedOrigins: ["*"], dataDir: "/nonexistent/unused" }), silentLogger());

    await expect(attempt).rejects.toBeInstanceOf(ConfigError);
    await expect(attempt).rejects.toThrow("CORS_ALLOWED_ORIGINS lets pages of other origins call the API from a browser, but no API_KEYS are configured");
  });

  test("HOST 0.0.0.0 with API keys passes the check", async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), "smsgateway-auth-"));
    try {
      const security = await prepareSecurity(testConfig({ host: "0.0.0.0", dataDir, apiKeys: sender.entry }), silentLogger());

      expect(security.access.enabled).toBe(true);
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  // 10.255.255.1 is not an address of this machine, so even a regression could not bind it.
  test("the service process exits 2 with the reason", async () => {
    const dataDir = path.join(await mkdtemp(path.join(tmpdir(), "smsgateway-auth-")), "data");
    try {
      const failure = await run(process.execPath, [...serviceNodeArgs(TEST_BUNDLE), "--host", "10.255.255.1", "--port", "0", "--data-dir", dataDir], {
        env: { ...process.env, API_KEYS: "", API_KEYS_FILE: "" },
        timeout: 60_000,
      }).then(
        () => undefined,
        (error: { code: number; stderr: string }) => error,
      );

      expect(failure?.code).toBe(2);
      expect(failure?.stderr).toMatch(/^smsgateway: --host 10\.255\.255\.1 accepts connections from other hosts, but no API_KEYS/);
    } finally {
      await rm(path.dirname(dataDir), { recursive: true, force: true });
    }
  });

  test("startApp refuses before opening storage or listening", async () => {
    const dataDir = path.join(await mkdtemp(path.join(tmpdir(), "smsgateway-auth-")), "data");
    try {
      const attempt = startApp(testConfig({ host: "10.255.255.1", dataDir }), silentLogger());

      await expect(attempt).rejects.toBeInstanceOf(ConfigError);
      await expect(attempt).rejects.toThrow(/HOST 10\.255\.255\.1 .* Set API_KEYS or API_KEYS_FILE/);
      await expect(stat(dataDir)).rejects.toMatchObject({ code: "ENOENT" });
    } finally {
      await rm(path.dirname(dataDir), { recursive: true, force: true });
    }
  });
});
