import { readdir, readFile, rm } from "node:fs/promises";
import path from "node:path";

import { toJsonString } from "@bufbuild/protobuf";
import { Code, type ConnectError } from "@connectrpc/connect";
import Database from "better-sqlite3";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";

import { GatewayErrorSchema, RetryInfoSchema } from "../../gen/smsgateway/v1/errors_pb.js";
import { IntegrationService } from "../../gen/smsgateway/v1/integration_service_pb.js";
import { DateSource, SendSmsResponseSchema, SmsService } from "../../gen/smsgateway/v1/sms_service_pb.js";
import { CLIENT_KINDS } from "../helpers/clients.js";
import { ScriptedGateway } from "../helpers/scripted-gateway.js";
import { startTestService, type TestService } from "../helpers/service.js";
import { keyEntry, rejection } from "./security-fixtures.js";

const API_KEY = "echoed-api-key-5f2a9c1b7d";
const SECRET_KEY = "echoed-secret-8e4d2a6c0f";
/** An API key of digits only, which a gateway can echo as a valid Retry-After. */
const NUMERIC_API_KEY = "48213977051";

let gateway: ScriptedGateway;

beforeAll(async () => {
  gateway = await ScriptedGateway.start();
  gateway
    .on("/reject", (request) => ({
      status: 400,
      json: { error: `invalid key ${API_KEY}`, echo: request.headers, secret: encodeURIComponent(SECRET_KEY) },
    }))
    .on("/accept", () => ({ json: { data: { id: "msg-77", date: API_KEY, note: SECRET_KEY } } }))
    .on("/ok", () => ({ json: { data: { id: "msg-88", date: "2026-01-02T03:04:05Z" } } }))
    .on("/numeric-date", (request) => ({ json: { data: { id: "msg-99", date: request.headers["x-api-key"] } } }))
    .on("/rate-limit", (request) => ({ status: 429, headers: { "retry-after": String(request.headers["x-api-key"]) } }));
});

afterAll(async () => {
  await gateway.close();
});

/** Returns every text that leaves the service in an error: message, metadata and details. */
function errorText(error: ConnectError): string {
  const details = error.findDetails(GatewayErrorSchema).map((detail) => JSON.stringify(detail));
  return [error.rawMessage, decodeURIComponent(error.rawMessage), JSON.stringify([...error.metadata]), ...details].join("\n");
}

describe("echoed secrets", () => {
  let service: TestService;

  beforeAll(async () => {
    service = await startTestService();
  });

  afterAll(async () => {
    await service.stop();
  });

  async function configure(pathName: string, apiKey = API_KEY): Promise<string> {
    const { client, close } = CLIENT_KINDS[0]!.create(IntegrationService, service.baseUrl);
    try {
      const { integration } = await client.configureIntegration({
        integration: {
          baseUrl: gateway.url(pathName),
          apiKeyHeader: "X-API-KEY",
          apiKey,
          secretKeyHeader: "X-SECRET-KEY",
          secretKey: SECRET_KEY,
          defaultSender: "Acme",
        },
      });
      return integration?.id ?? "";
    } finally {
      close();
    }
  }

  describe.each(CLIENT_KINDS)("$name", (kind) => {
    test("4xx body echoing the keys is redacted", async () => {
      const integrationId = await configure("/reject");
      const { client, close } = kind.create(SmsService, service.baseUrl);
      try {
        const error = await rejection(client.sendSms({ integrationId, to: "+15550002222", content: "hi" }));

        expect(error.code).toBe(Code.FailedPrecondition);
        const [detail] = error.findDetails(GatewayErrorSchema);
        expect(detail?.bodyExcerpt).toContain("[REDACTED]");
        expect(errorText(error)).not.toContain(API_KEY);
        expect(errorText(error)).not.toContain(SECRET_KEY);
      } finally {
        close();
      }
    });

    test("Retry-After echoing a numeric key is dropped", async () => {
      const integrationId = await configure("/rate-limit", NUMERIC_API_KEY);
      const { client, close } = kind.create(SmsService, service.baseUrl);
      try {
        const error = await rejection(client.sendSms({ integrationId, to: "+15550002222", content: "hi" }));

        expect(error.code).toBe(Code.ResourceExhausted);
        expect(error.metadata.get("retry-after")).toBeNull();
        expect(error.findDetails(RetryInfoSchema)).toEqual([]);
        expect(errorText(error)).not.toContain(NUMERIC_API_KEY);
      } finally {
        close();
      }
    });

    test("date echoing a numeric key is the send time", async () => {
      const integrationId = await configure("/numeric-date", NUMERIC_API_KEY);
      const { client, close } = kind.create(SmsService, service.baseUrl);
      try {
        const startSeconds = Math.floor(Date.now() / 1000);
        const sent = await client.sendSms({ integrationId, to: "+15550002222", content: "hi" });

        expect(sent.rawDate).toBe("[REDACTED]");
        expect(sent.dateSource).toBe(DateSource.SEND_TIME);
        expect(Number(sent.date?.seconds)).toBeGreaterThanOrEqual(startSeconds);
        expect(sent.warnings).toContain("the date at data.date repeats a credential, so the date is the send time");
      } finally {
        close();
      }
    });

    test("2xx reply echoing the key is redacted in warnings and fields", async () => {
      const integrationId = await configure("/accept");
      const { client, close } = kind.create(SmsService, service.baseUrl);
      try {
        const sent = await client.sendSms({ integrationId, to: "+15550002222", content: "hi" });

        expect(sent.id).toBe("msg-77");
        expect(sent.warnings.join("\n")).toContain("[REDACTED]");
        const json = toJsonString(SendSmsResponseSchema, sent);
        expect(json).not.toContain(API_KEY);
        expect(json).not.toContain(SECRET_KEY);
      } finally {
        close();
      }
    });
  });

  test("logs never contain the keys", () => {
    expect(service.logLines.length).toBeGreaterThan(0);
    const text = JSON.stringify(service.logLines);
    expect(text).not.toContain(API_KEY);
    expect(text).not.toContain(SECRET_KEY);
    expect(text).not.toContain(NUMERIC_API_KEY);
  });

  test("database files never contain the keys", async () => {
    const files = (await readdir(service.dataDir)).filter((name) => name.startsWith("smsgateway.db"));
    expect(files).toContain("smsgateway.db");
    for (const name of files) {
      const bytes = await readFile(path.join(service.dataDir, name));
      expect(bytes.includes(API_KEY), name).toBe(false);
      expect(bytes.includes(SECRET_KEY), name).toBe(false);
    }

    const database = new Database(path.join(service.dataDir, "smsgateway.db"), { readonly: true });
    try {
      const rows = database.prepare("select api_key, secret_key from integrations").all() as Record<string, string>[];
      expect(rows.length).toBeGreaterThan(0);
      for (const row of rows) {
        expect(row.api_key).toMatch(/^v1:local-\d{8}-[0-9a-f]{6}:/);
        expect(row.secret_key).toMatch(/^v1:local-\d{8}-[0-9a-f]{6}:/);
      }
    } finally {
      database.close();
    }
  });
});

describe("secret encrypted under a key that is gone", () => {
  const OLD = keyEntry("old");
  /** One key for every restart, because a key id keeps the key first used under it. */
  const NEW = keyEntry("new");
  /** Services started on the first one's data; the first one is closed in beforeAll. */
  const services: TestService[] = [];
  let integrationId: string;
  let dataDir: string;

  beforeAll(async () => {
    const first = await startTestService({ encryptionKeys: OLD });
    dataDir = first.dataDir;
    const { client, close } = CLIENT_KINDS[0]!.create(IntegrationService, first.baseUrl);
    const { integration } = await client.configureIntegration({
      integration: { id: "stale", baseUrl: gateway.url("/ok"), apiKeyHeader: "X-API-KEY", apiKey: "old-api-key-0001", defaultSender: "Acme" },
      allowMissing: true,
    });
    close();
    integrationId = integration?.id ?? "";
    await first.app.close(1_000);
  });

  afterEach(async () => {
    for (const service of services.splice(0)) {
      await service.stop();
    }
  });

  afterAll(async () => {
    // The first service is already closed; only its data directory is left.
    await rm(dataDir, { recursive: true, force: true });
  });

  async function restartWith(encryptionKeys: string): Promise<TestService> {
    const service = await startTestService({ dataDir, encryptionKeys });
    services.push(service);
    return service;
  }

  test("send fails with FAILED_PRECONDITION naming the key id", async () => {
    const service = await restartWith(NEW);
    const sms = CLIENT_KINDS[0]!.create(SmsService, service.baseUrl);
    const integrations = CLIENT_KINDS[0]!.create(IntegrationService, service.baseUrl);
    try {
      const error = await rejection(sms.client.sendSms({ integrationId, to: "+15550003333", content: "hi" }));
      const read = await integrations.client.getIntegration({ id: integrationId });

      expect(error.code).toBe(Code.FailedPrecondition);
      expect(error.rawMessage).toBe(
        'stored api_key of integration "stale" cannot be decrypted with the configured keys (key id old); ' +
          "configure key old in ENCRYPTION_KEYS or reconfigure the integration's api_key",
      );
      expect(service.logLines).toContainEqual(
        expect.objectContaining({ level: 50, integrationId, field: "api_key", keyId: "old", failure: "unknown_key" }),
      );
      expect(read.integration?.apiKeyHint).toBe("(cannot be decrypted)");
      expect(gateway.requestsTo("/ok")).toHaveLength(0);
    } finally {
      sms.close();
      integrations.close();
    }
  });

  test("an update must send the unreadable secret", async () => {
    const service = await restartWith(NEW);
    const integrations = CLIENT_KINDS[0]!.create(IntegrationService, service.baseUrl);
    const sms = CLIENT_KINDS[0]!.create(SmsService, service.baseUrl);
    try {
      const keep = await rejection(
        integrations.client.configureIntegration({ integration: { id: integrationId, defaultSender: "Other" }, updateMask: { paths: ["default_sender"] } }),
      );
      const replaced = await integrations.client.configureIntegration({
        integration: { id: integrationId, apiKey: "new-api-key-0002" },
        updateMask: { paths: ["api_key"] },
      });
      const sent = await sms.client.sendSms({ integrationId, to: "+15550003333", content: "hi" });

      expect(keep.code).toBe(Code.FailedPrecondition);
      expect(keep.rawMessage).toContain("(key id old)");
      expect(replaced.integration?.apiKeyHint).toBe("****0002");
      expect(sent.id).toBe("msg-88");
      expect(gateway.requestsTo("/ok").at(-1)?.headers["x-api-key"]).toBe("new-api-key-0002");
    } finally {
      integrations.close();
      sms.close();
    }
  });
});
