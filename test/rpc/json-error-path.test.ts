import { fromJsonString, type DescMessage } from "@bufbuild/protobuf";
import { describe, expect, test } from "vitest";
import { ConfigureIntegrationRequestSchema } from "../../gen/smsgateway/v1/integration_service_pb.js";
import { SendSmsBatchRequestSchema, SendSmsRequestSchema } from "../../gen/smsgateway/v1/sms_service_pb.js";
import { locateJsonError } from "../../src/rpc/json-error-path.js";
import { rejectUndecodable, UndecodableRequest } from "../../src/rpc/undecodable-request.js";

const strict = { ignoreUnknownFields: false };

const batch = (...messages: unknown[]) => JSON.stringify({ integrationId: "gw", messages });
const good = { to: "+15550001111", content: "hello" };

describe("locateJsonError", () => {
  test.each([
    { name: "unknown key in a batch message", text: batch(good, good, { ...good, idempotencyKEY: "k" }), path: "messages[2]", suggestion: "idempotencyKey" },
    { name: "wrong type in a batch message", text: batch(good, { ...good, to: 5 }), path: "messages[1]" },
    { name: "message written with proto names", text: JSON.stringify({ integration_id: "gw", messages: [good, { ...good, idempotency_kee: "k" }] }), path: "messages[1]" },
    { name: "unknown key in a nested passthrough", text: batch(good, { ...good, passthrough: { headerz: {} } }), path: "messages[1].passthrough" },
    { name: "unknown key at the top", text: JSON.stringify({ integrationId: "gw", message: [good] }), path: "", suggestion: undefined },
    { name: "proto name in another case", text: JSON.stringify({ Integration_ID: "gw", messages: [good] }), path: "", suggestion: "integrationId" },
    { name: "message that is not an object", text: batch(good, "hello"), path: "messages[1]", notObject: true },
    { name: "request that is an array", text: "[]", path: "", notObject: true },
    { name: "text that is not JSON", text: "{", path: "" },
  ])("$name", ({ text, path, suggestion, notObject }) => {
    expect(() => fromJsonString(SendSmsBatchRequestSchema, text, strict)).toThrow();

    const location = locateJsonError(SendSmsBatchRequestSchema, text, strict);

    expect(location.path).toBe(path);
    expect(location.suggestion).toBe(suggestion);
    expect(location.notObject).toBe(notObject);
  });

  test("lists the fields for an unknown key", () => {
    const text = batch(good, { ...good, passthrough: { priority: "high" } });

    expect(locateJsonError(SendSmsBatchRequestSchema, text, strict)).toEqual({ path: "messages[1].passthrough", fieldNames: ["body", "headers", "query"] });
  });

  test("names a passthrough body that is not an object", () => {
    const text = batch({ ...good, passthrough: { body: "x" } });

    expect(locateJsonError(SendSmsBatchRequestSchema, text, strict)).toEqual({ path: "messages[0].passthrough.body", notObject: true });
  });

  test("names the first key that fails, as protobuf-es does", () => {
    const scalarFirst = JSON.stringify({ integrationId: 5, messages: [{ to: "+1", Content: "a" }] });
    const messagesFirst = JSON.stringify({ messages: [{ to: "+1", Content: "a" }], integrationId: 5 });
    const limitFirst = JSON.stringify({ integration: { id: "gw", maxConcurrentSends: "lots", displayname: "x" } });

    expect(locateJsonError(SendSmsBatchRequestSchema, scalarFirst, strict)).toEqual({ path: "" });
    expect(locateJsonError(SendSmsBatchRequestSchema, messagesFirst, strict)).toEqual({ path: "messages[0]", suggestion: "content" });
    expect(locateJsonError(ConfigureIntegrationRequestSchema, limitFirst, strict)).toEqual({ path: "integration" });
  });

  test("stops at a well-known type", () => {
    const text = JSON.stringify({ integration: { id: "gw", defaultSender: "Acme" }, updateMask: { paths: ["defaultSender"] } });
    expect(() => fromJsonString(ConfigureIntegrationRequestSchema, text, strict)).toThrow();

    expect(locateJsonError(ConfigureIntegrationRequestSchema, text, strict)).toEqual({ path: "" });
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

    expect(message).toContain("from JSON: Array(0)");
    expect(message).toContain("the request must be a JSON object of its fields");
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
