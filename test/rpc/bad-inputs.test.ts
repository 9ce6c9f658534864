import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { BadRequestSchema } from "../../gen/smsgateway/v1/errors_pb.js";
import { IntegrationService } from "../../gen/smsgateway/v1/integration_service_pb.js";
import type { IntegrationSchema } from "../../gen/smsgateway/v1/integration_pb.js";
import { SmsService, type SendSmsRequest } from "../../gen/smsgateway/v1/sms_service_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ConfigureIntegrationRequestSchema } from "../../gen/smsgateway/v1/integration_service_pb.js";
import type { SendSmsRequestSchema } from "../../gen/smsgateway/v1/sms_service_pb.js";
import { startTestService, type TestService } from "../helpers/service.js";

let service: TestService;
let integrations: ReturnType<typeof createClient<typeof IntegrationService>>;
let sms: ReturnType<typeof createClient<typeof SmsService>>;
let existingId: string;

const VALID: MessageInitShape<typeof IntegrationSchema> = {
  baseUrl: "http://127.0.0.1:9/sms",
  apiKeyHeader: "X-API-KEY",
  apiKey: "key-0123456789",
  defaultSender: "Acme",
};

beforeAll(async () => {
  service = await startTestService();
  const transport = createConnectTransport({ baseUrl: service.baseUrl, httpVersion: "1.1" });
  integrations = createClient(IntegrationService, transport);
  sms = createClient(SmsService, transport);
  const created = await integrations.configureIntegration({ integration: VALID });
  existingId = created.integration?.id ?? "";
});

afterAll(async () => {
  await service.stop();
});

async function failure(promise: Promise<unknown>): Promise<{ code: Code; fields: string[]; message: string }> {
  try {
    await promise;
  } catch (thrown) {
    const error = ConnectError.from(thrown);
    const fields = error.findDetails(BadRequestSchema).flatMap((d) => d.fieldViolations.map((v) => v.field));
    return { code: error.code, fields, message: error.rawMessage };
  }
  throw new Error("expected the call to fail");
}

type ConfigureInit = MessageInitShape<typeof ConfigureIntegrationRequestSchema>;

const configureCases: { name: string; request: () => ConfigureInit; code: Code; field?: string }[] = [
  { name: "no integration", request: () => ({}), code: Code.InvalidArgument, field: "integration" },
  { name: "missing base_url", request: () => ({ integration: { ...VALID, baseUrl: "" } }), code: Code.InvalidArgument, field: "integration.base_url" },
  { name: "relative base_url", request: () => ({ integration: { ...VALID, baseUrl: "/sms" } }), code: Code.InvalidArgument, field: "integration.base_url" },
  { name: "ftp base_url", request: () => ({ integration: { ...VALID, baseUrl: "ftp://gw.example.test/" } }), code: Code.InvalidArgument, field: "integration.base_url" },
  { name: "user info in base_url", request: () => ({ integration: { ...VALID, baseUrl: "https://u:p@gw.example.test/" } }), code: Code.InvalidArgument, field: "integration.base_url" },
  { name: "header name with space", request: () => ({ integration: { ...VALID, apiKeyHeader: "X API KEY" } }), code: Code.InvalidArgument, field: "integration.api_key_header" },
  { name: "header name Host", request: () => ({ integration: { ...VALID, apiKeyHeader: "Host" } }), code: Code.InvalidArgument, field: "integration.api_key_header" },
  { name: "missing api_key", request: () => ({ integration: { ...VALID, apiKey: "" } }), code: Code.InvalidArgument, field: "integration.api_key" },
  { name: "CRLF in api_key", request: () => ({ integration: { ...VALID, apiKey: "abc\r\nX-Evil: 1" } }), code: Code.InvalidArgument, field: "integration.api_key" },
  { name: "LF in secret_key", request: () => ({ integration: { ...VALID, secretKeyHeader: "X-Secret", secretKey: "a\nb" } }), code: Code.InvalidArgument, field: "integration.secret_key" },
  { name: "secret_key without header", request: () => ({ integration: { ...VALID, secretKey: "s3cret" } }), code: Code.InvalidArgument, field: "integration.secret_key_header" },
  { name: "same header twice", request: () => ({ integration: { ...VALID, secretKeyHeader: "x-api-key", secretKey: "s3cret" } }), code: Code.InvalidArgument, field: "integration.secret_key_header" },
  { name: "missing default_sender", request: () => ({ integration: { ...VALID, defaultSender: " " } }), code: Code.InvalidArgument, field: "integration.default_sender" },
  { name: "empty id_path segment", request: () => ({ integration: { ...VALID, idPath: "data..id" } }), code: Code.InvalidArgument, field: "integration.id_path" },
  { name: "token auth without auth_url", request: () => ({ integration: { ...VALID, authenticateByToken: true, tokenKey: "token" } }), code: Code.InvalidArgument, field: "integration.auth_url" },
  { name: "token auth without token_key", request: () => ({ integration: { ...VALID, authenticateByToken: true, authUrl: "http://127.0.0.1:9/auth" } }), code: Code.InvalidArgument, field: "integration.token_key" },
  { name: "invalid id", request: () => ({ integration: { ...VALID, id: "Not Valid!" } }), code: Code.InvalidArgument, field: "integration.id" },
  { name: "unknown id", request: () => ({ integration: { ...VALID, id: "no-such-integration" } }), code: Code.NotFound },
  { name: "mask on create", request: () => ({ integration: VALID, updateMask: { paths: ["base_url"] } }), code: Code.InvalidArgument, field: "update_mask" },
  { name: "unknown mask path", request: () => ({ integration: { id: existingId }, updateMask: { paths: ["create_time"] } }), code: Code.InvalidArgument, field: "update_mask" },
  { name: "masked update clears required", request: () => ({ integration: { id: existingId }, updateMask: { paths: ["base_url"] } }), code: Code.InvalidArgument, field: "integration.base_url" },
  { name: "tab in base_url", request: () => ({ integration: { ...VALID, baseUrl: "http://127.0.0.\t1:9/sms" } }), code: Code.InvalidArgument, field: "integration.base_url" },
  { name: "line break in display_name", request: () => ({ integration: { ...VALID, displayName: "Acme\r\nrow" } }), code: Code.InvalidArgument, field: "integration.display_name" },
  { name: "65-emoji default_sender", request: () => ({ integration: { ...VALID, defaultSender: "\u{1F600}".repeat(65) } }), code: Code.InvalidArgument, field: "integration.default_sender" },
  { name: "201-character display_name", request: () => ({ integration: { ...VALID, displayName: "\u{1F600}".repeat(201) } }), code: Code.InvalidArgument, field: "integration.display_name" },
];

describe("URL ports", () => {
  test.each(["http://127.0.0.1:99999/x", "http://127.0.0.1:0/x", "https://[::1]:70000/", "http://gw.example.test:8o8o/sms"])("%s names the port", async (url) => {
    const result = await failure(integrations.configureIntegration({ integration: { ...VALID, baseUrl: url } }));

    expect(result.code).toBe(Code.InvalidArgument);
    expect(result.fields).toEqual(["integration.base_url"]);
    expect(result.message).toContain("integration.base_url: has an invalid port; use a port from 1 to 65535, or none for the scheme's default");
  });

  test.each([
    { field: "baseUrl", name: "integration.base_url" },
    { field: "authUrl", name: "integration.auth_url" },
  ])("$name password without port stays hidden", async ({ field, name }) => {
    const password = "S3cretPassw0rd";
    const integration = { ...VALID, authenticateByToken: true, tokenKey: "token", authUrl: "http://127.0.0.1:9/auth", [field]: `http://user:${password}@gw.example.test/sms` };

    const result = await failure(integrations.configureIntegration({ integration }));

    expect(result.code).toBe(Code.InvalidArgument);
    expect(result.fields).toEqual([name]);
    expect(result.message).not.toContain(password);
    expect(result.message).toContain("must not contain a user name or password");
  });

  test.each([
    "http://user:S3cr3t#x@h/sms",
    "http://user:S3cr3t?x@h/sms",
    "http://user:S3cr3t/x@h/sms",
    "http://user:x@S3cr3t@h:99999/",
    "http:user:S3cr3t@h:99999/",
    "http:/user:S3cr3t@h:99999/",
    "http:\\\\user:S3cr3t@h:99999/",
    "//user:S3cr3t@h/",
    "http://user:123456#S3cr3t@h/sms",
    "https://ho st/sms?api_key=S3cr3t",
    "https://user:S3cr3t",
    "https://user:S3cr3t/sms",
    "http://apikey:S3cr3t/",
  ])("%s is rejected without its secret", async (baseUrl) => {
    const result = await failure(integrations.configureIntegration({ integration: { ...VALID, baseUrl } }));

    expect(result.fields).toEqual(["integration.base_url"]);
    expect(result.message).not.toContain("S3cr3t");
    expect(result.message).not.toContain("S3");
    expect(result.message).not.toContain("123456");
  });

  test.each(["http://[fe80::1%25eth0]/sms", "http://[fe80::1%eth0]:8080/sms"])("%s names the zone id", async (baseUrl) => {
    const result = await failure(integrations.configureIntegration({ integration: { ...VALID, baseUrl } }));

    expect(result.fields).toEqual(["integration.base_url"]);
    expect(result.message).toContain("integration.base_url: has an IPv6 zone id (after %), which a URL cannot carry; write the address without it");
  });

  test("an unparsable URL is not quoted", async () => {
    const result = await failure(integrations.configureIntegration({ integration: { ...VALID, baseUrl: "http://gw example/sms" } }));

    expect(result.message).toContain("integration.base_url: is not an absolute URL; write it as https://host/path");
    expect(result.message).not.toContain("gw example");
  });

  test("port 65535 is accepted", async () => {
    // A dry run checks the integration as ConfigureIntegration does and stores nothing.
    const tested = await integrations.testIntegration({ target: { case: "integration", value: { ...VALID, baseUrl: "http://127.0.0.1:65535/sms" } } });

    expect(tested.smsRequest?.url).toBe("http://127.0.0.1:65535/sms");
  });
});

describe("ConfigureIntegration lengths", () => {
  test("count code points, not UTF-16 units", async () => {
    const created = await integrations.configureIntegration({
      integration: { ...VALID, defaultSender: "\u{1F600}".repeat(64), displayName: "\u{1F600}".repeat(200), idPath: `data.${"\u{1F600}".repeat(251)}` },
    });

    expect([...(created.integration?.defaultSender ?? "")]).toHaveLength(64);
    expect([...(created.integration?.displayName ?? "")]).toHaveLength(200);
    expect([...(created.integration?.idPath ?? "")]).toHaveLength(256);

    // The listing test below counts the integrations of this file.
    await integrations.deleteIntegration({ id: created.integration?.id ?? "" });
  });
});

describe("ConfigureIntegration rejects", () => {
  test.each(configureCases)("$name", async ({ request, code, field }) => {
    const result = await failure(integrations.configureIntegration(request()));

    expect(result.code).toBe(code);
    if (field !== undefined) {
      expect(result.fields).toContain(field);
      expect(result.message).toContain(field);
    }
  });

  test.each([
    { name: "missing api_key", integration: { ...VALID, apiKey: "" }, text: "integration.api_key: required: the value that the gateway expects in api_key_header" },
    {
      name: "missing auth_url",
      integration: { ...VALID, authenticateByToken: true, tokenKey: "token" },
      text: "integration.auth_url: required when authenticate_by_token is set: the full http:// or https:// URL that returns a token",
    },
  ])("$name says what to give", async ({ integration, text }) => {
    const result = await failure(integrations.configureIntegration({ integration }));

    expect(result.message).toContain(text);
  });

  test("unknown id says how to create it", async () => {
    const result = await failure(integrations.configureIntegration({ integration: { ...VALID, id: "no-such-integration" } }));

    expect(result.code).toBe(Code.NotFound);
    expect(result.message).toContain("set allow_missing to create it with this id");
  });

  test("update without mask explains the mask", async () => {
    const result = await failure(integrations.configureIntegration({ integration: { id: existingId, defaultSender: "AcmeBank" } }));

    expect(result.code).toBe(Code.InvalidArgument);
    expect(result.fields).toEqual(["integration.base_url", "integration.api_key_header"]);
    expect(result.message).toContain("integration.base_url: required");
    expect(result.message).toContain("integration.api_key_header: required");
    expect(result.message).toContain("Without update_mask, an update replaces the whole integration");
    expect(result.message).toContain('name them in update_mask, such as default_sender ("updateMask": "defaultSender" in JSON)');
  });

  test("unsaved edit without mask explains the mask", async () => {
    const result = await failure(integrations.testIntegration({ target: { case: "integration", value: { id: existingId, defaultSender: "AcmeBank" } } }));

    expect(result.fields).toEqual(["integration.base_url", "integration.api_key_header"]);
    expect(result.message).toContain("Without update_mask, an update replaces the whole integration");
  });

  test("create with missing fields has no mask hint", async () => {
    const result = await failure(integrations.configureIntegration({ integration: { ...VALID, baseUrl: "" } }));

    expect(result.fields).toEqual(["integration.base_url"]);
    expect(result.message).not.toContain("update_mask");
  });

  test("rejected update leaves the stored integration intact", async () => {
    await failure(integrations.configureIntegration({ integration: { id: existingId, baseUrl: "not a url" }, updateMask: { paths: ["baseUrl"] } }));

    const read = await integrations.getIntegration({ id: existingId });
    expect(read.integration?.baseUrl).toBe(VALID.baseUrl);
    expect(read.integration?.apiKeyHint).toBe("****6789");
  });
});

type SendInit = MessageInitShape<typeof SendSmsRequestSchema>;

const sendCases: { name: string; request: () => SendInit; code: Code; field?: string }[] = [
  { name: "missing integration_id", request: () => ({ to: "+15550001", content: "hi" }), code: Code.InvalidArgument, field: "integration_id" },
  { name: "missing to", request: () => ({ integrationId: existingId, content: "hi" }), code: Code.InvalidArgument, field: "to" },
  { name: "missing content", request: () => ({ integrationId: existingId, to: "+15550001" }), code: Code.InvalidArgument, field: "content" },
  { name: "empty sender", request: () => ({ integrationId: existingId, to: "+15550001", content: "hi", sender: "" }), code: Code.InvalidArgument, field: "sender" },
  { name: "control characters in to", request: () => ({ integrationId: existingId, to: "+1555\n0001", content: "hi" }), code: Code.InvalidArgument, field: "to" },
  { name: "malformed integration_id", request: () => ({ integrationId: "../etc", to: "+15550001", content: "hi" }), code: Code.InvalidArgument, field: "integration_id" },
  { name: "unknown integration", request: () => ({ integrationId: "int_missing", to: "+15550001", content: "hi" }), code: Code.NotFound },
];

describe("SendSms rejects", () => {
  test.each(sendCases)("$name", async ({ request, code, field }) => {
    const result = await failure(sms.sendSms(request() as SendSmsRequest));

    expect(result.code).toBe(code);
    if (field !== undefined) {
      expect(result.fields).toContain(field);
    }
  });
});

describe("JSON request errors", () => {
  async function errorOf(reply: Response): Promise<{ status: number; code: string; message: string }> {
    const body = (await reply.json()) as { code: string; message: string };
    return { status: reply.status, code: body.code, message: body.message };
  }

  test("unknown field in a Connect POST", async () => {
    const misspelled = { integrationId: existingId, to: "+15550001", content: "hi", idempotencyKEY: "key-1" };

    const reply = await fetch(`${service.baseUrl}/smsgateway.v1.SmsService/SendSms`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(misspelled),
    });

    expect(await errorOf(reply)).toMatchObject({ status: 400, code: "invalid_argument", message: expect.stringContaining('key "idempotencyKEY" is unknown') });
  });

  test("unknown field in one message of a batch", async () => {
    const messages = [
      { to: "+15550001", content: "hi" },
      { to: "+15550002", content: "hi", idempotencyKEY: "key-2" },
    ];

    const reply = await fetch(`${service.baseUrl}/smsgateway.v1.SmsService/SendSmsBatch`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ integrationId: existingId, messages }),
    });

    const error = await errorOf(reply);
    expect(error).toMatchObject({ status: 400, code: "invalid_argument" });
    expect(error.message).toContain('could not be decoded at messages[1]: cannot decode message smsgateway.v1.BatchMessage from JSON: key "idempotencyKEY" is unknown');
    expect(error.message).toContain('did you mean "idempotencyKey"?');
  });

  test.each([{ paths: ["baseUrl"] }, "base_url"])("update mask %j says how to write one", async (updateMask) => {
    const reply = await fetch(`${service.baseUrl}/smsgateway.v1.IntegrationService/ConfigureIntegration`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ integration: { id: existingId, baseUrl: "http://127.0.0.1:9/sms" }, updateMask }),
    });

    expect(await errorOf(reply)).toMatchObject({
      status: 400,
      code: "invalid_argument",
      message: expect.stringContaining('at updateMask: expected one string of lowerCamelCase field paths separated by commas, such as "baseUrl,defaultSender"'),
    });
  });

  test("snake_case mask names the path", async () => {
    const reply = await fetch(`${service.baseUrl}/smsgateway.v1.IntegrationService/ConfigureIntegration`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ integration: { id: existingId, defaultSender: "Acme" }, updateMask: "default_sender" }),
    });

    const error = await errorOf(reply);
    expect(error).toMatchObject({ status: 400, code: "invalid_argument" });
    expect(error.message).toContain('at updateMask: expected one string of lowerCamelCase field paths');
    expect(error.message).toContain('got "default_sender"; FieldMask paths are lowerCamelCase in JSON, so write "defaultSender"');
  });

  test("unknown mask path says how JSON names it", async () => {
    const reply = await fetch(`${service.baseUrl}/smsgateway.v1.IntegrationService/ConfigureIntegration`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ integration: { id: existingId, defaultSender: "Acme" }, updateMask: "defaultSendr" }),
    });

    expect(await errorOf(reply)).toMatchObject({
      status: 400,
      message: expect.stringContaining('In JSON, write them in lowerCamelCase and join them with commas and no spaces, as in "updateMask": "baseUrl,defaultSender"'),
    });
  });

  test.each([
    { method: "GET", path: "IntegrationService/GetIntegration?id=demo", status: 415, allow: null, text: "a Connect GET of GetIntegration needs the query parameters encoding=json and message" },
    { method: "GET", path: "SmsService/SendSms", status: 405, allow: "POST", text: "SendSms has side effects, so it takes POST only; POST the request with content-type application/json" },
    { method: "PUT", path: "IntegrationService/GetIntegration", status: 405, allow: "POST, GET", text: "GetIntegration takes POST or GET" },
    { method: "DELETE", path: "IntegrationService/DeleteIntegration", status: 405, allow: "POST", text: "DeleteIntegration takes POST" },
  ])("$method $path says how to call it", async ({ method, path, status, allow, text }) => {
    const reply = await fetch(`${service.baseUrl}/smsgateway.v1.${path}`, { method });

    expect(reply.status).toBe(status);
    expect(reply.headers.get("allow")).toBe(allow);
    expect((await errorOf(reply)).message).toContain(text);
  });

  describe("wrong-type values are not quoted", () => {
    const SECRET = 98765432109876;
    const PHONE = 15551234567;
    const cases = [
      { name: "API key", procedure: "IntegrationService/ConfigureIntegration", request: () => ({ integration: { ...VALID, apiKey: SECRET } }), path: "integration.apiKey", value: String(SECRET) },
      { name: "phone number", procedure: "SmsService/SendSms", request: () => ({ integrationId: existingId, to: PHONE, content: "hi" }), path: "to", value: String(PHONE) },
    ];

    function expectNoValue(message: string, path: string, value: string) {
      expect(message).toContain(`the request message could not be decoded at ${path}: expected a string, got a number`);
      expect(message).not.toContain(value);
      const logged = service.logLines.filter((line) => JSON.stringify(line).includes(value));
      expect(logged).toEqual([]);
    }

    test.each(cases)("$name in a Connect POST", async ({ procedure, request, path, value }) => {
      const reply = await fetch(`${service.baseUrl}/smsgateway.v1.${procedure}`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(request()),
      });

      const error = await errorOf(reply);
      expect(error).toMatchObject({ status: 400, code: "invalid_argument" });
      expectNoValue(error.message, path, value);
      expect(service.logLines.some((line) => line.msg === "rpc failed" && String(line.error).includes(`at ${path}: expected a string, got a number`))).toBe(true);
    });

    test.each(cases)("$name in a gRPC-Web call in JSON", async ({ procedure, request, path, value }) => {
      const json = Buffer.from(JSON.stringify(request()));
      const frame = Buffer.concat([Buffer.from([0, 0, 0, 0, 0]), json]);
      frame.writeUInt32BE(json.byteLength, 1);

      const reply = await fetch(`${service.baseUrl}/smsgateway.v1.${procedure}`, {
        method: "POST",
        headers: { "content-type": "application/grpc-web+json" },
        body: frame,
      });

      const trailers = Buffer.from(await reply.arrayBuffer()).toString("latin1");
      const message = decodeURIComponent(/grpc-message: (.*)\r\n/.exec(trailers)?.[1] ?? "");
      expect(trailers).toContain("grpc-status: 3\r\n");
      expectNoValue(message, path, value);
    });

    test("a Connect GET", async () => {
      const query = new URLSearchParams({ connect: "v1", encoding: "json", message: JSON.stringify({ id: PHONE }) });

      const reply = await fetch(`${service.baseUrl}/smsgateway.v1.IntegrationService/GetIntegration?${query}`);

      const error = await errorOf(reply);
      expect(error).toMatchObject({ status: 400, code: "invalid_argument" });
      expectNoValue(error.message, "id", String(PHONE));
    });
  });

  test("unknown field in a Connect GET", async () => {
    const query = new URLSearchParams({ connect: "v1", encoding: "json", message: JSON.stringify({ id: existingId, name: "x" }) });

    const reply = await fetch(`${service.baseUrl}/smsgateway.v1.IntegrationService/GetIntegration?${query}`);

    expect(await errorOf(reply)).toMatchObject({ status: 400, code: "invalid_argument", message: expect.stringContaining('key "name" is unknown') });
  });
});

describe("ListIntegrations rejects", () => {
  test.each([
    { name: "negative page_size", request: { pageSize: -1 }, field: "page_size" },
    { name: "page_size over 1000", request: { pageSize: 1001 }, field: "page_size" },
    { name: "forged page_token", request: { pageToken: "bm9wZQ" }, field: "page_token" },
  ])("$name", async ({ request, field }) => {
    const result = await failure(integrations.listIntegrations(request));

    expect(result.code).toBe(Code.InvalidArgument);
    expect(result.fields).toEqual([field]);
  });
});

test("ListIntegrations pages through everything", async () => {
  for (let i = 0; i < 4; i++) {
    await integrations.configureIntegration({ integration: VALID });
  }
  const seen: string[] = [];
  let pageToken = "";
  do {
    const page = await integrations.listIntegrations({ pageSize: 2, pageToken });
    expect(page.integrations.length).toBeLessThanOrEqual(2);
    seen.push(...page.integrations.map((i) => i.id));
    pageToken = page.nextPageToken;
  } while (pageToken !== "");

  expect(seen.length).toBe(5);
  expect([...seen].sort()).toEqual(seen);
  expect(new Set(seen).size).toBe(5);
});


describe("update masks", () => {
  test.each(["constructor", "__proto__", "toString", "hasOwnProperty"])("inherited name %s is rejected", async (path) => {
    const before = await integrations.getIntegration({ id: existingId });

    const result = await failure(integrations.configureIntegration({ integration: { id: existingId, displayName: "x" }, updateMask: { paths: [path] } }));
    const after = await integrations.getIntegration({ id: existingId });

    expect(result.code).toBe(Code.InvalidArgument);
    expect(result.fields).toEqual(["update_mask"]);
    expect(result.message).toContain(`"${path}" cannot be updated`);
    expect(after.integration?.updateTime).toEqual(before.integration?.updateTime);
  });

  test("empty secret_key removes key and header", async () => {
    const created = await integrations.configureIntegration({
      integration: { ...VALID, secretKeyHeader: "X-SECRET-KEY", secretKey: "secret-98765432" },
    });
    const id = created.integration?.id ?? "";

    const updated = await integrations.configureIntegration({ integration: { id }, updateMask: { paths: ["secret_key"] } });

    expect(created.integration?.secretKeyHint).toBe("****5432");
    expect(updated.integration?.secretKeyHeader).toBe("");
    expect(updated.integration?.secretKeyHint).toBe("");
    expect(updated.integration?.apiKeyHint).toBe("****6789");
  });

  test("secret_key with a new header stays required", async () => {
    const created = await integrations.configureIntegration({
      integration: { ...VALID, secretKeyHeader: "X-SECRET-KEY", secretKey: "secret-0123456789" },
    });
    const id = created.integration?.id ?? "";

    const result = await failure(
      integrations.configureIntegration({ integration: { id, secretKeyHeader: "X-OTHER-SECRET" }, updateMask: { paths: ["secret_key", "secret_key_header"] } }),
    );

    expect(result.code).toBe(Code.InvalidArgument);
    expect(result.fields).toEqual(["integration.secret_key"]);
    expect(result.message).toContain("to remove the secret key, leave secret_key_header empty too");
  });
});

describe("allow_missing create", () => {
  test("invalid mask path is rejected", async () => {
    const id = `create-mask-${Date.now()}`;

    const result = await failure(
      integrations.configureIntegration({ integration: { ...VALID, id }, allowMissing: true, updateMask: { paths: ["bogus", "display_name"] } }),
    );
    const listed = await integrations.listIntegrations({ pageSize: 1000 });

    expect(result.code).toBe(Code.InvalidArgument);
    expect(result.fields).toEqual(["update_mask"]);
    expect(result.message).toContain('"bogus" cannot be updated');
    expect(listed.integrations.map((integration) => integration.id)).not.toContain(id);
  });

  test("valid mask path creates every field", async () => {
    const id = `create-mask-ok-${Date.now()}`;

    const created = await integrations.configureIntegration({
      integration: { ...VALID, id, displayName: "Created" },
      allowMissing: true,
      updateMask: { paths: ["display_name"] },
    });

    expect(created.integration?.id).toBe(id);
    expect(created.integration?.displayName).toBe("Created");
    expect(created.integration?.baseUrl).toBe(VALID.baseUrl);
  });
});
