import { rm } from "node:fs/promises";

import { Code, type ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { BadRequestSchema } from "../../gen/smsgateway/v1/errors_pb.js";
import { IntegrationService } from "../../gen/smsgateway/v1/integration_service_pb.js";
import { rejection } from "../helpers/clients.js";
import { startTestService, type TestService } from "../helpers/service.js";
import { createApiKey, keyEntry } from "../security/security-fixtures.js";
import {
  CONNECT_AND_GRPC,
  CREDENTIALS,
  startTesterSetup,
  storeIntegration,
  uniquePath,
  type TesterSetup,
} from "./tester-fixtures.js";

let setup: TesterSetup;

beforeAll(async () => {
  setup = await startTesterSetup();
  setup.gateway.otherwise({ json: { data: { id: "must-not-be-sent" } } });
});

afterAll(async () => {
  await setup.stop();
});

/** Returns the invalid fields named in the error's BadRequest detail, sorted. */
function invalidFields(error: ConnectError): string[] {
  return error
    .findDetails(BadRequestSchema)
    .flatMap((detail) => detail.fieldViolations.map((violation) => violation.field))
    .sort();
}

/**
 * Returns the error message as the server wrote it. grpc-js 1.14 decodes
 * grpc-message with decodeURI, which leaves escapes such as %3A for ":".
 */
function messageOf(error: ConnectError): string {
  return decodeURIComponent(error.rawMessage);
}

describe.each(CONNECT_AND_GRPC)("$name", (kind) => {
  test("invalid unsaved integration names its fields", async () => {
    const { client, close } = kind.create(IntegrationService, setup.service.baseUrl);
    try {
      const before = await client.listIntegrations({ pageSize: 1000 });

      const error = await rejection(
        client.testIntegration({
          target: { case: "integration", value: { baseUrl: "gateway.example/sms", apiKeyHeader: "X API", defaultSender: "" } },
        }),
      );
      const after = await client.listIntegrations({ pageSize: 1000 });

      expect(error.code).toBe(Code.InvalidArgument);
      expect(invalidFields(error)).toEqual([
        "integration.api_key",
        "integration.api_key_header",
        "integration.base_url",
        "integration.default_sender",
      ]);
      const violations = error.findDetails(BadRequestSchema).flatMap((detail) => detail.fieldViolations);
      expect(violations.find((violation) => violation.field === "integration.base_url")?.description).toBe(
        "is not an absolute URL; write it as https://host/path",
      );
      expect(after.integrations).toHaveLength(before.integrations.length);
    } finally {
      close();
    }
  });

  test("unknown id is NOT_FOUND", async () => {
    const { client, close } = kind.create(IntegrationService, setup.service.baseUrl);
    try {
      const error = await rejection(client.testIntegration({ target: { case: "integrationId", value: "no-such-integration" } }));

      expect(error.code).toBe(Code.NotFound);
      expect(messageOf(error)).toBe('integration "no-such-integration" not found');
    } finally {
      close();
    }
  });

  const badRequests = [
    { name: "missing target", request: {}, fields: ["integration_id"] },
    { name: "malformed id", request: { target: { case: "integrationId" as const, value: "Bad Id" } }, fields: ["integration_id"] },
    { name: "send without message", request: { target: { case: "integrationId" as const, value: "any" }, send: true }, fields: ["content", "to"] },
    { name: "control character in to", request: { target: { case: "integrationId" as const, value: "any" }, to: "+1555\n0100" }, fields: ["to"] },
    { name: "empty sender", request: { target: { case: "integrationId" as const, value: "any" }, sender: " " }, fields: ["sender"] },
    {
      name: "mask with integration_id",
      request: { target: { case: "integrationId" as const, value: "any" }, updateMask: { paths: ["base_url"] } },
      fields: ["update_mask"],
    },
    {
      name: "mask for a new integration",
      request: { target: { case: "integration" as const, value: { ...CREDENTIALS, baseUrl: "https://gw.example/" } }, updateMask: { paths: ["base_url"] } },
      fields: ["update_mask"],
    },
  ];

  test.each(badRequests)("$name is INVALID_ARGUMENT", async ({ request, fields }) => {
    const { client, close } = kind.create(IntegrationService, setup.service.baseUrl);
    try {
      const error = await rejection(client.testIntegration(request));

      expect(error.code).toBe(Code.InvalidArgument);
      expect(invalidFields(error)).toEqual(fields);
    } finally {
      close();
    }
  });

  test("credential passthrough header is rejected, nothing sent", async () => {
    const path = uniquePath("sms");
    const { client, close } = kind.create(IntegrationService, setup.service.baseUrl);
    try {
      const id = await storeIntegration(client, { baseUrl: setup.gateway.url(path) });

      const error = await rejection(
        client.testIntegration({
          target: { case: "integrationId", value: id },
          to: "+15551230000",
          content: "Hi",
          passthrough: { headers: { "x-api-key": "guess" } },
          send: true,
        }),
      );

      expect(error.code).toBe(Code.InvalidArgument);
      expect(invalidFields(error)).toEqual(['passthrough.headers["x-api-key"]']);
      expect(setup.gateway.requestsTo(path)).toHaveLength(0);
    } finally {
      close();
    }
  });
});

describe("TestIntegration scope", () => {
  const writer = createApiKey("writer", "integrations:write");
  const reader = createApiKey("reader", "integrations:read+sms:send");
  let service: TestService;

  beforeAll(async () => {
    service = await startTestService({ apiKeys: [writer.entry, reader.entry].join(",") });
  });

  afterAll(async () => {
    await service.stop();
  });

  test.each(CONNECT_AND_GRPC)("needs integrations:write over $name", async (kind) => {
    const { client, close } = kind.create(IntegrationService, service.baseUrl);
    const request = { target: { case: "integration" as const, value: { ...CREDENTIALS, baseUrl: setup.gateway.url(uniquePath("sms")) } } };
    try {
      const denied = await rejection(client.testIntegration(request, { headers: { authorization: `Bearer ${reader.key}` } }));
      const allowed = await client.testIntegration(request, { headers: { authorization: `Bearer ${writer.key}` } });

      expect(denied.code).toBe(Code.PermissionDenied);
      expect(messageOf(denied)).toContain("integrations:write, which smsgateway.v1.IntegrationService/TestIntegration needs");
      expect(allowed.smsRequest?.url).toBe(request.target.value.baseUrl);
    } finally {
      close();
    }
  });
});

describe("stored secret encrypted under a key that is gone", () => {
  let service: TestService;
  let dataDir: string;

  beforeAll(async () => {
    const first = await startTestService({ encryptionKeys: keyEntry("old") });
    dataDir = first.dataDir;
    const { client, close } = CONNECT_AND_GRPC[0]!.create(IntegrationService, first.baseUrl);
    await client.configureIntegration({
      integration: { ...CREDENTIALS, id: "stale", baseUrl: setup.gateway.url("/stale") },
      allowMissing: true,
    });
    close();
    await first.app.close(1_000);
    service = await startTestService({ dataDir, encryptionKeys: keyEntry("new") });
  });

  afterAll(async () => {
    await service.stop();
    await rm(dataDir, { recursive: true, force: true });
  });

  test("test fails with FAILED_PRECONDITION naming the key id", async () => {
    const { client, close } = CONNECT_AND_GRPC[0]!.create(IntegrationService, service.baseUrl);
    try {
      const error = await rejection(client.testIntegration({ target: { case: "integrationId", value: "stale" } }));

      expect(error.code).toBe(Code.FailedPrecondition);
      expect(error.rawMessage).toContain('stored api_key of integration "stale" cannot be decrypted with the configured keys (key id old)');
      expect(setup.gateway.requestsTo("/stale")).toHaveLength(0);
    } finally {
      close();
    }
  });

  test("unsaved edit that keeps the secret fails the same way", async () => {
    const { client, close } = CONNECT_AND_GRPC[0]!.create(IntegrationService, service.baseUrl);
    try {
      const error = await rejection(
        client.testIntegration({
          target: { case: "integration", value: { id: "stale", defaultSender: "Other" } },
          updateMask: { paths: ["default_sender"] },
        }),
      );

      expect(error.code).toBe(Code.FailedPrecondition);
      expect(error.rawMessage).toContain("(key id old)");
    } finally {
      close();
    }
  });
});
