import { fromJsonString, type DescMessage } from "@bufbuild/protobuf";
import { UninterpretedOptionSchema } from "@bufbuild/protobuf/wkt";
import { describe, expect, test } from "vitest";
import { GatewayErrorSchema, RetryInfoSchema } from "../../gen/smsgateway/v1/errors_pb.js";
import { ConfigureIntegrationRequestSchema } from "../../gen/smsgateway/v1/integration_service_pb.js";
import { SendSmsBatchRequestSchema, SendSmsRequestSchema } from "../../gen/smsgateway/v1/sms_service_pb.js";
import { locateJsonError } from "../../src/rpc/json-error-path.js";
import { rejectUndecodable, UndecodableRequest, undecodableError } from "../../src/rpc/undecodable-request.js";

const strict = { ignoreUnknownFields: false };

const batch = (...messages: unknown[]) => JSON.stringify({ integrationId: "gw", messages });
const good = { to: "+15550001111", content: "hello" };

describe("locateJsonError", () => {
  test.each([
    { name: "unknown key in a batch message", text: batch(good, good, { ...good, idempotencyKEY: "k" }), path: "messages[2]", suggestion: "idempotencyKey" },
    { name: "wrong type in a batch message", text: batch(good, { ...good, to: 5 }), path: "messages[1].to", problem: "expected a string, got a number" },
    { name: "message written with proto names", text: JSON.stringify({ integration_id: "gw", messages: [good, { ...good, idempotency_kee: "k" }] }), path: "messages[1]" },
    { name: "unknown key in a nested passthrough", text: batch(good, { ...good, passthrough: { headerz: {} } }), path: "messages[1].passthrough" },
    { name: "unknown key at the top", text: JSON.stringify({ integrationId: "gw", message: [good] }), path: "", suggestion: undefined },
    { name: "proto name in another case", text: JSON.stringify({ Integration_ID: "gw", messages: [good] }), path: "", suggestion: "integrationId" },
    { name: "message that is not an object", text: batch(good, "hello"), path: "messages[1]", problem: "expected a JSON object, got a string" },
    { name: "request that is an array", text: "[]", path: "", problem: "expected a JSON object of the request's fields, got an array" },
    { name: "text that is not JSON", text: "{", path: "", problem: "the text is not valid JSON: Expected property name or '}' in JSON at position 1" },
    {
      name: "unpaired surrogate",
      text: batch(good, { ...good, content: "ok \ud800" }),
      path: "messages[1].content",
      problem: "expected a string, got a string with an unpaired surrogate escape (\\uD800 to \\uDFFF), which UTF-8 cannot encode",
    },
  ])("$name", ({ text, path, suggestion, problem }) => {
    expect(() => fromJsonString(SendSmsBatchRequestSchema, text, strict)).toThrow();

    const location = locateJsonError(SendSmsBatchRequestSchema, text, strict);

    expect(location.path).toBe(path);
    expect(location.suggestion).toBe(suggestion);
    expect(location.problem).toBe(problem);
  });

  test("lists the fields for an unknown key", () => {
    const text = batch(good, { ...good, passthrough: { priority: "high" } });

    expect(locateJsonError(SendSmsBatchRequestSchema, text, strict)).toEqual({ path: "messages[1].passthrough", fieldNames: ["body", "headers", "query"] });
  });

  test("names a passthrough body that is not an object", () => {
    const text = batch({ ...good, passthrough: { body: "x" } });

    expect(locateJsonError(SendSmsBatchRequestSchema, text, strict)).toEqual({ path: "messages[0].passthrough.body", problem: "expected a JSON object, got a string" });
  });

  test("names the first key that fails, as protobuf-es does", () => {
    const scalarFirst = JSON.stringify({ integrationId: 5, messages: [{ to: "+1", Content: "a" }] });
    const messagesFirst = JSON.stringify({ messages: [{ to: "+1", Content: "a" }], integrationId: 5 });
    const limitFirst = JSON.stringify({ integration: { id: "gw", maxConcurrentSends: "lots", displayname: "x" } });

    expect(locateJsonError(SendSmsBatchRequestSchema, scalarFirst, strict)).toEqual({ path: "integrationId", problem: "expected a string, got a number" });
    expect(locateJsonError(SendSmsBatchRequestSchema, messagesFirst, strict)).toEqual({ path: "messages[0]", suggestion: "content" });
    expect(locateJsonError(ConfigureIntegrationRequestSchema, limitFirst, strict)).toEqual({
      path: "integration.maxConcurrentSends",
      problem: "expected a whole number from -2147483648 to 2147483647, got a string that is not one",
    });
  });

  test("describes a well-known type by its JSON form", () => {
    const text = JSON.stringify({ integration: { id: "gw", defaultSender: "Acme" }, updateMask: { paths: ["defaultSender"] } });
    expect(() => fromJsonString(ConfigureIntegrationRequestSchema, text, strict)).toThrow();

    expect(locateJsonError(ConfigureIntegrationRequestSchema, text, strict)).toEqual({
      path: "updateMask",
      problem: 'expected one string of lowerCamelCase field paths separated by commas, such as "baseUrl,defaultSender", got an object',
    });
  });

  test.each([
    { mask: "default_sender", fix: "defaultSender" },
    { mask: "base_url,default_sender", fix: "baseUrl,defaultSender" },
    { mask: "displayName,secret_key_header", fix: "displayName,secretKeyHeader" },
  ])("quotes snake_case mask $mask", ({ mask, fix }) => {
    const text = JSON.stringify({ integration: { id: "gw" }, updateMask: mask });
    expect(() => fromJsonString(ConfigureIntegrationRequestSchema, text, strict)).toThrow("path names must be lowerCamelCase");

    const location = locateJsonError(ConfigureIntegrationRequestSchema, text, strict);

    expect(location.path).toBe("updateMask");
    expect(location.problem).toContain(`got "${mask}"; FieldMask paths are lowerCamelCase in JSON, so write "${fix}"`);
  });

  test.each([
    { name: "a space", mask: "api key_x" },
    { name: "a line break", mask: "x_y\n" },
    { name: "over 200 characters", mask: `x_${"y".repeat(200)}` },
  ])("mask with $name is not quoted", ({ mask }) => {
    const text = JSON.stringify({ updateMask: mask });

    const location = locateJsonError(ConfigureIntegrationRequestSchema, text, strict);

    expect(location.path).toBe("updateMask");
    expect(location.problem).toMatch(/, got a string with an underscore in a path; FieldMask paths are lowerCamelCase in JSON, such as "defaultSender" for default_sender$/);
    expect(location.problem).not.toContain(mask);
  });

  test("follows a single message field", () => {
    const text = JSON.stringify({ integration: { id: "gw", baseURL: "http://127.0.0.1:9/" } });

    expect(locateJsonError(ConfigureIntegrationRequestSchema, text, strict)).toEqual({ path: "integration", suggestion: "baseUrl" });
  });
});

/** Decodes `text`, which must fail, and returns the failure as the handler passes it on. */
function undecodable(schema: DescMessage, text: string): UndecodableRequest {
  try {
    fromJsonString(schema, text, strict);
  } catch (error) {
    return new UndecodableRequest(error, locateJsonError(schema, text, strict));
  }
  throw new Error("expected the text not to decode");
}

describe("rejectUndecodable", () => {
  async function messageOf(request: UndecodableRequest): Promise<string> {
    try {
      await rejectUndecodable(request);
    } catch (error) {
      return (error as Error).message;
    }
    throw new Error("expected rejectUndecodable to throw");
  }

  test("names the path and the likely key", async () => {
    const text = batch(good, { ...good, idempotencyKEY: "k" });

    const message = await messageOf(undecodable(SendSmsBatchRequestSchema, text));

    expect(message).toBe(
      '[invalid_argument] the request message could not be decoded at messages[1]: cannot decode message smsgateway.v1.BatchMessage from JSON: key "idempotencyKEY" is unknown; did you mean "idempotencyKey"?',
    );
  });

  test("says a message is a JSON object", async () => {
    const message = await messageOf(undecodable(SendSmsRequestSchema, "[]"));

    expect(message).toBe("[invalid_argument] the request message could not be decoded: expected a JSON object of the request's fields, got an array");
  });

  test("keeps the plain form without a location", async () => {
    const message = await messageOf(new UndecodableRequest(new Error("premature EOF")));

    expect(message).toBe("[invalid_argument] the request message could not be decoded: premature EOF");
  });

  test("single SendSms has no path", () => {
    const text = JSON.stringify({ ...good, integrationId: "gw", idempotencyKEY: "k" });

    expect(locateJsonError(SendSmsRequestSchema, text, strict)).toEqual({ path: "", suggestion: "idempotencyKey" });
  });
});

describe("a wrong value is never quoted", () => {
  const SECRET = "98765432109876";
  const STAGE = "one of GATEWAY_STAGE_UNSPECIFIED, GATEWAY_STAGE_AUTH, GATEWAY_STAGE_SEND";

  test.each([
    { name: "a number for a secret", schema: ConfigureIntegrationRequestSchema, json: { integration: { apiKey: Number(SECRET) } }, path: "integration.apiKey", problem: "expected a string, got a number" },
    { name: "a number for a phone number", schema: SendSmsRequestSchema, json: { to: Number(SECRET) }, path: "to", problem: "expected a string, got a number" },
    { name: "a number in a header", schema: SendSmsRequestSchema, json: { passthrough: { headers: { "X-Token": Number(SECRET) } } }, path: 'passthrough.headers["X-Token"]', problem: "expected a string, got a number" },
    { name: "a batch message that is a string", schema: SendSmsBatchRequestSchema, json: { messages: [SECRET] }, path: "messages[0]", problem: "expected a JSON object, got a string" },
    { name: "a string for a whole number", schema: ConfigureIntegrationRequestSchema, json: { integration: { maxConcurrentSends: SECRET } }, path: "integration.maxConcurrentSends", problem: "expected a whole number from -2147483648 to 2147483647, got a string that is not one" },
    { name: "an int32 out of range", schema: GatewayErrorSchema, json: { httpStatus: Number(SECRET) }, path: "httpStatus", problem: "expected a whole number from -2147483648 to 2147483647, got a number that is not one" },
    { name: "a uint64 out of range", schema: UninterpretedOptionSchema, json: { positiveIntValue: `${SECRET}${SECRET}` }, path: "positiveIntValue", problem: "expected a whole number from 0 to 18446744073709551615, got a string that is not one" },
    { name: "an invalid enum name", schema: GatewayErrorSchema, json: { stage: SECRET }, path: "stage", problem: `expected ${STAGE}, got a string that is not one` },
    { name: "invalid base64", schema: UninterpretedOptionSchema, json: { stringValue: `${SECRET}!` }, path: "stringValue", problem: "expected a base64 string, got a string that is not one" },
    { name: "an invalid timestamp", schema: ConfigureIntegrationRequestSchema, json: { integration: { createTime: SECRET } }, path: "integration.createTime", problem: 'expected an RFC 3339 time from 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z, such as "2025-01-31T12:00:00Z", got a string that is not one' },
    { name: "a timestamp as a number", schema: ConfigureIntegrationRequestSchema, json: { integration: { createTime: Number(SECRET) } }, path: "integration.createTime", problem: expect.stringMatching(/, got a number$/) },
    { name: "an invalid duration", schema: RetryInfoSchema, json: { retryDelay: SECRET }, path: "retryDelay", problem: 'expected a duration in seconds, such as "1.5s", got a string that is not one' },
    { name: "a number for an update mask", schema: ConfigureIntegrationRequestSchema, json: { updateMask: Number(SECRET) }, path: "updateMask", problem: expect.stringMatching(/^expected one string of lowerCamelCase field paths .*, got a number$/) },
  ])("$name", async ({ schema, json, path, problem }) => {
    const text = JSON.stringify(json);
    let protobufMessage = "";
    try {
      fromJsonString(schema, text, strict);
    } catch (error) {
      protobufMessage = (error as Error).message;
    }
    // protobuf's own message quotes the value, or a part of it.
    expect(protobufMessage).toMatch(/98765|out of range|base64|RFC 3339/);

    const location = locateJsonError(schema, text, strict);
    const message = undecodableError(new UndecodableRequest(new Error(protobufMessage), location)).message;

    expect(location).toEqual({ path, problem });
    expect(message).not.toContain("98765");
  });

  test("text that is not JSON is not quoted", () => {
    const text = `{"integration": {"apiKey": x${SECRET}}}`;

    const message = undecodableError(new UndecodableRequest(new Error("from protobuf"), locateJsonError(ConfigureIntegrationRequestSchema, text, strict))).message;

    expect(() => JSON.parse(text)).toThrow("98765");
    expect(message).toBe("[invalid_argument] the request message could not be decoded: the text is not valid JSON");
  });
});
