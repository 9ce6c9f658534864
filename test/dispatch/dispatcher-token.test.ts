import { afterAll, afterEach, beforeEach, describe, expect, test } from "vitest";

import { MAX_TOKEN_LENGTH } from "../../src/dispatch/auth-reply.js";
import type { SmsMessage } from "../../src/dispatch/dispatcher.js";
import type { Integration } from "../../src/domain/integration.js";
import type { GatewayFailure } from "../../src/errors.js";
import { ScriptedGateway, type ScriptedReply } from "../helpers/scripted-gateway.js";
import { API_KEY, gatewayErrorOf, makeDispatcher, makeIntegration } from "./fixtures.js";

const TIMEOUT_MS = 300;
const TOKEN = "tok-7d0c2f9a41e8";

const dispatcher = makeDispatcher({ timeoutMs: TIMEOUT_MS });
let gateway: ScriptedGateway;

beforeEach(async () => {
  gateway = await ScriptedGateway.start();
  gateway.on("/sms", { json: { data: { id: "m1" } } });
});
afterEach(() => gateway.close());
afterAll(() => dispatcher.close());

const message: SmsMessage = { to: "+15551234567", content: "hi" };

function tokenIntegration(tokenKey = "token"): Integration {
  return makeIntegration(gateway.url("/sms"), {
    authenticateByToken: true,
    authUrl: gateway.url("/auth"),
    tokenKey,
  });
}

describe("Dispatcher.send with token auth", () => {
  test("fetches the token and sends it with the key headers", async () => {
    gateway.on("/auth", { json: { data: { token: TOKEN } } });

    const result = await dispatcher.send(tokenIntegration(), message);

    expect(result.id).toBe("m1");
    expect(gateway.requests.map((request) => request.url)).toEqual(["/auth", "/sms"]);
    const [auth, sms] = gateway.requests;
    expect(auth?.method).toBe("POST");
    expect(auth?.body).toBe("{}");
    expect(auth?.headers["content-type"]).toBe("application/json");
    expect(auth?.headers["x-api-key"]).toBe(API_KEY);
    expect(sms?.headers["token"]).toBe(TOKEN);
    expect(sms?.headers["x-api-key"]).toBe(API_KEY);
    expect(sms?.body).toBe('{"to":"+15551234567","content":"hi","sender":"ACME"}');
  });

  const tokenCases: Array<[string, string, string, string]> = [
    ["a number token digit-exact", "token", '{"data": {"token": 98765432109876543210}}', "98765432109876543210"],
    ["a hyphenated key", "access-token", '{"data": {"access-token": "t-1"}}', "t-1"],
    ["a dotted key as one key", "auth.token", '{"data": {"auth.token": "t-2", "auth": {"token": "wrong"}}}', "t-2"],
    ["a token of the maximum length", "token", JSON.stringify({ data: { token: "t".repeat(MAX_TOKEN_LENGTH) } }), "t".repeat(MAX_TOKEN_LENGTH)],
  ];

  test.each(tokenCases)("reads %s", async (_name, tokenKey, authBody, expected) => {
    gateway.on("/auth", { body: authBody });

    await dispatcher.send(tokenIntegration(tokenKey), message);

    expect(gateway.requestsTo("/sms")[0]?.headers[tokenKey.toLowerCase()]).toBe(expected);
  });

  const invalidReplies: Array<[string, ScriptedReply, string]> = [
    ["no token", { json: { data: {} } }, "has no token at data.token"],
    ["no data", { json: { token: TOKEN } }, "has no object at data"],
    ["an empty token", { json: { data: { token: "" } } }, "has an empty token at data.token"],
    ["an object token", { json: { data: { token: { value: TOKEN } } } }, 'has an object with the keys "value"'],
    ["a boolean token", { json: { data: { token: true } } }, "has true at data.token"],
    ["a token with a line break", { json: { data: { token: "a\r\nX-Injected: 1" } } }, "cannot be sent in a header"],
    ["a token over the maximum length", { json: { data: { token: "t".repeat(MAX_TOKEN_LENGTH + 1) } } }, "more than the 8192 that"],
    ["a non-JSON reply", { body: "token=abc" }, "is not JSON"],
    ["an empty 204 reply", { status: 204 }, "is not JSON"],
  ];

  test.each(invalidReplies)("fails on an auth reply with %s", async (_name, reply, problem) => {
    gateway.on("/auth", reply);

    const error = await gatewayErrorOf(dispatcher.send(tokenIntegration(), message));

    expect(error.info).toMatchObject({ failure: "invalid_auth_reply", stage: "auth", attempts: 1 });
    expect(error.message).toContain(problem);
    expect(error.message).toContain("Check token_key");
    expect(gateway.requestsTo("/sms")).toHaveLength(0);
  });

  test("shows the keys of a token reply but not its values", async () => {
    gateway.on("/auth", { json: { data: { access_token: TOKEN, expires_in: 3600, scopes: ["sms"], active: true } } });

    const error = await gatewayErrorOf(dispatcher.send(tokenIntegration(), message));

    expect(error.info.bodyExcerpt).toBe(
      '{"data":{"access_token":"[REDACTED]","expires_in":"[REDACTED]","scopes":["[REDACTED]"],"active":true}}',
    );
    expect(error.info.bodyTruncated).toBe(false);
  });

  test("shows nothing of a token reply that is not JSON", async () => {
    gateway.on("/auth", { body: `token=${TOKEN}` });

    const error = await gatewayErrorOf(dispatcher.send(tokenIntegration(), message));

    expect(error.info.bodyExcerpt).toBe("");
    expect(error.info.bodyTruncated).toBe(true);
  });

  const authFailures: Array<[number, GatewayFailure]> = [
    [401, "credentials_refused"],
    [403, "credentials_refused"],
    [400, "rejected"],
    [429, "rate_limited"],
    [500, "unavailable"],
    [302, "redirected"],
  ];

  test.each(authFailures)("stops after an auth reply of HTTP %d", async (status, failure) => {
    gateway.on("/auth", { status, body: `{"error":"denied for ${API_KEY}"}`, headers: { location: "/elsewhere" } });

    const error = await gatewayErrorOf(dispatcher.send(tokenIntegration(), message));

    expect(error.info).toMatchObject({ failure, stage: "auth", httpStatus: status, attempts: 1 });
    expect(error.info.bodyExcerpt).toBe('{"error":"denied for [REDACTED]"}');
    expect(error.message).toContain("the token request to auth_url");
    expect(gateway.requestsTo("/sms")).toHaveLength(0);
  });

  test("redacts the token in an SMS error", async () => {
    gateway.on("/auth", { json: { data: { token: TOKEN } } });
    gateway.on("/sms", { status: 401, body: `{"error":"token ${TOKEN} expired"}` });

    const error = await gatewayErrorOf(dispatcher.send(tokenIntegration(), message));

    expect(error.info).toMatchObject({ failure: "credentials_refused", stage: "send" });
    expect(error.info.bodyExcerpt).toBe('{"error":"token [REDACTED] expired"}');
    expect(error.message).toContain("token_key");
  });

  test("counts the auth request in the timeout", async () => {
    gateway.on("/auth", { hang: true });
    const startedAt = performance.now();

    const error = await gatewayErrorOf(dispatcher.send(tokenIntegration(), message));

    expect(error.info).toMatchObject({ failure: "timeout", stage: "auth" });
    expect(performance.now() - startedAt).toBeLessThan(TIMEOUT_MS + 1_000);
    expect(gateway.requestsTo("/sms")).toHaveLength(0);
  });

  test("fails when the auth body stops arriving", async () => {
    gateway.on("/auth", { body: '{"data":{"token":', hangBody: true });

    const error = await gatewayErrorOf(dispatcher.send(tokenIntegration(), message));

    expect(error.info).toMatchObject({ failure: "timeout", stage: "auth", httpStatus: 200 });
    expect(gateway.requestsTo("/sms")).toHaveLength(0);
  });

  test("shares one budget between auth and SMS", async () => {
    gateway.on("/auth", async () => {
      await new Promise((resolve) => setTimeout(resolve, 200));
      return { json: { data: { token: TOKEN } } };
    });
    gateway.on("/sms", async () => {
      await new Promise((resolve) => setTimeout(resolve, 200));
      return { json: { data: { id: "m1" } } };
    });

    const error = await gatewayErrorOf(dispatcher.send(tokenIntegration(), message));

    expect(error.info).toMatchObject({ failure: "timeout", stage: "send" });
  });
});
