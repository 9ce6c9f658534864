import { once } from "node:events";
import { createServer, type Server } from "node:net";

import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, type ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { ErrorInfoSchema } from "../../gen/smsgateway/v1/errors_pb.js";
import type { IntegrationSchema } from "../../gen/smsgateway/v1/integration_pb.js";
import { IntegrationService } from "../../gen/smsgateway/v1/integration_service_pb.js";
import { SmsService } from "../../gen/smsgateway/v1/sms_service_pb.js";
import { CLIENT_KINDS, rejection } from "../helpers/clients.js";
import { ScriptedGateway } from "../helpers/scripted-gateway.js";
import { startTestService, type TestService } from "../helpers/service.js";
import { StubResolver } from "../helpers/stub-resolver.js";

// The service runs with the tests' allow-list (127.0.0.1/32 and ::1/128) and a
// stub resolver. 127.0.0.2 plays a blocked address at send time, so a failed
// check would still not leave the machine, and the trap on 127.0.0.2 counts connections.

const resolver = new StubResolver();
let service: TestService;
let gateway: ScriptedGateway;
let gatewayPort: string;
let trap: Server;
let trapConnections = 0;

const VALID: MessageInitShape<typeof IntegrationSchema> = {
  apiKeyHeader: "X-API-KEY",
  apiKey: "key-0123456789",
  defaultSender: "Acme",
};

beforeAll(async () => {
  service = await startTestService({}, { resolver });
  gateway = await ScriptedGateway.start();
  gateway.on("/sms", { json: { data: { id: "msg-1" } } });
  gatewayPort = new URL(gateway.url()).port;

  trap = createServer((socket) => {
    trapConnections++;
    socket.destroy();
  });
  trap.listen(Number(gatewayPort), "127.0.0.2");
  await once(trap, "listening");
});

afterAll(async () => {
  await service.stop();
  await gateway.close();
  trap.close();
});

/**
 * Saves an integration whose host resolves to a public address, then points
 * the host at the blocked 127.0.0.2 and returns the error of a SendSms.
 */
async function sendAfterHostMoved(kind: (typeof CLIENT_KINDS)[number], host: string): Promise<ConnectError> {
  resolver.reset(host, "93.184.216.34");
  const integrations = kind.create(IntegrationService, service.baseUrl);
  const sms = kind.create(SmsService, service.baseUrl);
  try {
    const { integration } = await integrations.client.configureIntegration({
      integration: { ...VALID, baseUrl: `http://${host}:${gatewayPort}/sms` },
    });
    resolver.reset(host, "127.0.0.2");
    return await rejection(sms.client.sendSms({ integrationId: integration?.id ?? "", to: "+15550000001", content: "hi" }));
  } finally {
    integrations.close();
    sms.close();
  }
}

function errorInfo(error: ConnectError) {
  const [info] = error.findDetails(ErrorInfoSchema);
  return { reason: info?.reason, metadata: { ...info?.metadata } };
}

const saveCases = [
  {
    name: "metadata address in base_url",
    integration: { ...VALID, baseUrl: "http://169.254.169.254/latest/meta-data/" },
    reason: "OUTBOUND_ADDRESS_BLOCKED",
    metadata: { field: "integration.base_url", host: "169.254.169.254", address: "169.254.169.254", range: "linkLocal" },
  },
  {
    name: "metadata name in auth_url",
    integration: {
      ...VALID,
      baseUrl: "http://127.0.0.1:9/sms",
      authenticateByToken: true,
      authUrl: "http://metadata.google.internal./token",
      tokenKey: "token",
    },
    reason: "OUTBOUND_HOST_BLOCKED",
    metadata: { field: "integration.auth_url", host: "metadata.google.internal.", rule: "metadata" },
  },
  {
    name: "name resolving to a private address",
    integration: { ...VALID, baseUrl: "https://private-gw.example.com/sms" },
    reason: "OUTBOUND_ADDRESS_BLOCKED",
    metadata: { field: "integration.base_url", host: "private-gw.example.com", address: "10.0.0.7", range: "private" },
  },
];

describe.each(CLIENT_KINDS)("$name", (kind) => {
  test.each(saveCases)("ConfigureIntegration rejects $name", async ({ integration, reason, metadata }) => {
    resolver.reset("private-gw.example.com", "10.0.0.7");
    const integrations = kind.create(IntegrationService, service.baseUrl);
    try {
      const error = await rejection(integrations.client.configureIntegration({ integration }));

      expect(error.code).toBe(Code.PermissionDenied);
      expect(error.rawMessage.startsWith(`${metadata.field}: `)).toBe(true);
      expect(errorInfo(error)).toEqual({ reason, metadata });
    } finally {
      integrations.close();
    }
  });

  test("SendSms rejects a URL whose DNS answer changed since the save", async () => {
    const host = `moving-${kind.name.replace(/\W+/g, "-").toLowerCase()}.example.com`;

    const error = await sendAfterHostMoved(kind, host);

    expect(error.code).toBe(Code.PermissionDenied);
    expect(errorInfo(error)).toEqual({
      reason: "OUTBOUND_ADDRESS_BLOCKED",
      metadata: { field: "integration.base_url", host, address: "127.0.0.2", range: "loopback" },
    });
    expect(gateway.requests).toHaveLength(0);
    expect(trapConnections).toBe(0);
  });
});

test("a key in a blocked host name is redacted", async () => {
  const error = await sendAfterHostMoved(CLIENT_KINDS[0]!, `${VALID.apiKey}.example.com`);

  expect(error.code).toBe(Code.PermissionDenied);
  expect(errorInfo(error).metadata.host).toBe("[REDACTED].example.com");
  expect(error.rawMessage).not.toContain(VALID.apiKey);
  const logged = service.logLines.filter((line) => line.msg === "SSRF guard blocked a gateway request");
  expect(JSON.stringify(logged)).not.toContain(VALID.apiKey);
});

describe("ConfigureIntegration with the Connect client", () => {
  const kind = CLIENT_KINDS[0]!;

  test("stores nothing when it rejects a create", async () => {
    const integrations = kind.create(IntegrationService, service.baseUrl);
    const error = await rejection(
      integrations.client.configureIntegration({ integration: { ...VALID, id: "blocked-create", baseUrl: "http://[::ffff:10.0.0.1]/" }, allowMissing: true }),
    );
    const missing = await rejection(integrations.client.getIntegration({ id: "blocked-create" }));

    expect(error.code).toBe(Code.PermissionDenied);
    expect(missing.code).toBe(Code.NotFound);
  });

  test("keeps the stored URL when it rejects an update", async () => {
    const integrations = kind.create(IntegrationService, service.baseUrl);
    const { integration } = await integrations.client.configureIntegration({ integration: { ...VALID, baseUrl: gateway.url() } });
    const id = integration?.id ?? "";

    const error = await rejection(
      integrations.client.configureIntegration({ integration: { id, baseUrl: "http://0x7f.2:9/sms" }, updateMask: { paths: ["base_url"] } }),
    );
    const read = await integrations.client.getIntegration({ id });

    expect(error.code).toBe(Code.PermissionDenied);
    expect(errorInfo(error).metadata).toMatchObject({ field: "integration.base_url", host: "127.0.0.2", address: "127.0.0.2" });
    expect(read.integration?.baseUrl).toBe(gateway.url());
  });

  test("accepts a name that does not resolve yet, and sending fails as UNAVAILABLE", async () => {
    const integrations = kind.create(IntegrationService, service.baseUrl);
    const sms = kind.create(SmsService, service.baseUrl);
    const { integration } = await integrations.client.configureIntegration({
      integration: { ...VALID, baseUrl: "https://not-yet.example.com/sms" },
    });

    const error = await rejection(sms.client.sendSms({ integrationId: integration?.id ?? "", to: "+15550000001", content: "hi" }));

    expect(service.logLines).toContainEqual(
      expect.objectContaining({ field: "integration.base_url", host: "not-yet.example.com", code: "ENOTFOUND" }),
    );
    expect(error.code).toBe(Code.Unavailable);
    expect(error.rawMessage).toContain("host name not found (ENOTFOUND)");
  });
});

test("blocked sends are logged as warnings", () => {
  const lines = service.logLines.filter((line) => line.msg === "SSRF guard blocked a gateway request");

  expect(lines.length).toBeGreaterThan(0);
  expect(lines[0]).toMatchObject({ level: 40, reason: "OUTBOUND_ADDRESS_BLOCKED", field: "integration.base_url" });
});
