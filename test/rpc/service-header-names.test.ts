import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";

import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { BadRequestSchema } from "../../gen/smsgateway/v1/errors_pb.js";
import type { IntegrationSchema } from "../../gen/smsgateway/v1/integration_pb.js";
import { IntegrationService } from "../../gen/smsgateway/v1/integration_service_pb.js";
import { SmsService } from "../../gen/smsgateway/v1/sms_service_pb.js";
import { CLIENT_KINDS, rejection } from "../helpers/clients.js";
import { ScriptedGateway } from "../helpers/scripted-gateway.js";
import { startTestService, type TestService } from "../helpers/service.js";

const API_KEY = "key-7c2e9a41d0";
const SECRET_KEY = "sec-5b8f3d62e1";
const TOKEN = "tok-1a9d4c7e35";

type IntegrationInit = MessageInitShape<typeof IntegrationSchema>;

let gateway: ScriptedGateway;

beforeAll(async () => {
  gateway = await ScriptedGateway.start();
  // The token is read at data.<token_key>, so the reply has it under every name the tests give token_key.
  const tokens = { "X-TOKEN": TOKEN, "Idempotency-Key": TOKEN, "idempotency-key": TOKEN };
  gateway.on("/auth", { json: { data: tokens } }).on("/sms", { json: { data: { id: "msg-1" } } });
});

afterAll(async () => {
  await gateway.close();
});

/** Builds an integration with all three credential headers: API key, secret key and token. */
function integrationWithEveryHeader(): IntegrationInit {
  return {
    baseUrl: gateway.url("/sms"),
    apiKeyHeader: "X-API-KEY",
    apiKey: API_KEY,
    secretKeyHeader: "X-SECRET-KEY",
    secretKey: SECRET_KEY,
    authenticateByToken: true,
    authUrl: gateway.url("/auth"),
    tokenKey: "X-TOKEN",
    defaultSender: "Acme",
  };
}

/** The request field of each integration field that names a header. */
const HEADER_FIELDS = [
  { field: "api_key_header", property: "apiKeyHeader" },
  { field: "secret_key_header", property: "secretKeyHeader" },
  { field: "token_key", property: "tokenKey" },
] as const;

/** Names of headers the service sets itself, in the spellings a user may type. */
const SERVICE_HEADER_NAMES = ["Idempotency-Key", "idempotency-key", "IDEMPOTENCY-KEY", "Content-Type", "host", "Content-Length"];

describe("ConfigureIntegration rejects a header the service sets", () => {
  let service: TestService;

  beforeAll(async () => {
    service = await startTestService();
  });

  afterAll(async () => {
    await service.stop();
  });

  const cases = HEADER_FIELDS.flatMap(({ field, property }) => SERVICE_HEADER_NAMES.map((name) => ({ field, name, property })));

  describe.each(CLIENT_KINDS)("$name", (kind) => {
    test.each(cases)("$field: $name", async ({ field, name, property }) => {
      const { client, close } = kind.create(IntegrationService, service.baseUrl);
      try {
        const error = await rejection(client.configureIntegration({ integration: { ...integrationWithEveryHeader(), [property]: name } }));

        expect(error.code).toBe(Code.InvalidArgument);
        const violations = error.findDetails(BadRequestSchema).flatMap((detail) => detail.fieldViolations);
        expect(violations.map((violation) => violation.field)).toEqual([`integration.${field}`]);
        expect(violations[0]?.description).toContain(`"${name}"`);
        if (name.toLowerCase() === "idempotency-key") {
          expect(violations[0]?.description).toContain("idempotency_key");
          expect(violations[0]?.description).toContain("use the header name that the gateway expects");
        }
      } finally {
        close();
      }
    });
  });
});

describe("an integration stored with a credential header named Idempotency-Key", () => {
  let dataDir: string;

  beforeAll(async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), "smsgateway-header-names-"));
  });

  afterAll(async () => {
    await rm(dataDir, { recursive: true, force: true });
  });

  /**
   * Stores a valid integration, then renames one of its header fields in the
   * database, as an integration saved before the check was added would be,
   * and starts the service on it.
   */
  async function serviceWithStoredHeader(column: string, name: string): Promise<{ service: TestService; integrationId: string }> {
    const first = await startTestService({ dataDir });
    let integrationId: string;
    try {
      const { client, close } = CLIENT_KINDS[0]!.create(IntegrationService, first.baseUrl);
      try {
        integrationId = (await client.configureIntegration({ integration: integrationWithEveryHeader() })).integration?.id ?? "";
      } finally {
        close();
      }
    } finally {
      await first.stop();
    }

    const database = new Database(path.join(dataDir, "smsgateway.db"));
    try {
      database.prepare(`update integrations set ${column} = ? where id = ?`).run(name, integrationId);
    } finally {
      database.close();
    }
    return { service: await startTestService({ dataDir }), integrationId };
  }

  test.each(HEADER_FIELDS.flatMap(({ field }) => ["Idempotency-Key", "idempotency-key"].map((name) => ({ field, name }))))(
    "$field $name: a keyed send is refused before any request, an unkeyed one sends",
    async ({ field, name }) => {
      const { service, integrationId } = await serviceWithStoredHeader(field, name);
      const { client, close } = CLIENT_KINDS[0]!.create(SmsService, service.baseUrl);
      try {
        const before = gateway.requests.length;
        const error = await rejection(
          client.sendSms({ integrationId, to: "+15550003333", content: "hi", idempotencyKey: "caller-key-1" }),
        );

        expect(error.code).toBe(Code.FailedPrecondition);
        expect(error.rawMessage).toContain(`${field} "${name}"`);
        expect(error.rawMessage).toContain("ConfigureIntegration");
        expect(error.rawMessage).not.toContain(API_KEY);
        expect(gateway.requests.length).toBe(before);

        await client.sendSms({ integrationId, to: "+15550003333", content: "hi" });

        const sent = gateway.requests.slice(before).find((received) => received.url === "/sms");
        const expected: Record<string, string> = { api_key_header: API_KEY, secret_key_header: SECRET_KEY, token_key: TOKEN };
        expect(sent?.headers["idempotency-key"]).toBe(expected[field]);
      } finally {
        close();
        await service.stop();
      }
    },
  );
});

describe("a keyed send", () => {
  test("sends each credential and the key separately", async () => {
    const service = await startTestService();
    const integrationClient = CLIENT_KINDS[0]!.create(IntegrationService, service.baseUrl);
    const smsClient = CLIENT_KINDS[0]!.create(SmsService, service.baseUrl);
    try {
      const { integration } = await integrationClient.client.configureIntegration({ integration: integrationWithEveryHeader() });
      const before = gateway.requests.length;

      await smsClient.client.sendSms({ integrationId: integration?.id ?? "", to: "+15550004444", content: "hi", idempotencyKey: "caller-key-2" });

      const sent = gateway.requests.slice(before).find((received) => received.url === "/sms");
      const names = (sent?.rawHeaders ?? []).filter((_, index) => index % 2 === 0).map((name) => name.toLowerCase());
      expect(names.filter((name) => name === "idempotency-key")).toHaveLength(1);
      expect(sent?.headers).toMatchObject({
        "idempotency-key": "caller-key-2",
        "x-api-key": API_KEY,
        "x-secret-key": SECRET_KEY,
        "x-token": TOKEN,
      });
    } finally {
      integrationClient.close();
      smsClient.close();
      await service.stop();
    }
  });
});
