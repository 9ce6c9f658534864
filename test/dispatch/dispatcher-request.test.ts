import { afterAll, afterEach, beforeEach, describe, expect, test } from "vitest";

import type { SmsMessage } from "../../src/dispatch/dispatcher.js";
import { ScriptedGateway } from "../helpers/scripted-gateway.js";
import { API_KEY, invalidArgumentOf, makeDispatcher, makeIntegration, SECRET_KEY } from "./fixtures.js";

const dispatcher = makeDispatcher();
let gateway: ScriptedGateway;

beforeEach(async () => {
  gateway = await ScriptedGateway.start();
  gateway.on("/sms", { status: 200, json: { data: { id: "m1" } } });
});
afterEach(() => gateway.close());
afterAll(() => dispatcher.close());

const message: SmsMessage = { to: "+15551234567", content: "Your code is 1234" };

describe("Dispatcher.send request", () => {
  test("posts the exact body and headers", async () => {
    await dispatcher.send(makeIntegration(gateway.url()), message);

    expect(gateway.requests).toHaveLength(1);
    const [received] = gateway.requests;
    expect(received?.method).toBe("POST");
    expect(received?.url).toBe("/sms");
    expect(received?.body).toBe('{"to":"+15551234567","content":"Your code is 1234","sender":"ACME"}');
    expect(received?.headers["content-type"]).toBe("application/json");
    expect(received?.headers["content-length"]).toBe(String(Buffer.byteLength(received?.body ?? "")));
    expect(received?.headers["x-api-key"]).toBe(API_KEY);
    expect(received?.rawHeaders).toContain("X-API-KEY");
    expect(received?.headers["transfer-encoding"]).toBeUndefined();
  });

  const secretCases: Array<[string, string, string, boolean]> = [
    ["sends the secret header when both parts are set", "X-SECRET-KEY", SECRET_KEY, true],
    ["omits the secret header without a value", "X-SECRET-KEY", "", false],
    ["omits the secret header without a name", "", SECRET_KEY, false],
  ];

  test.each(secretCases)("%s", async (_name, secretKeyHeader, secretKey, sent) => {
    await dispatcher.send(makeIntegration(gateway.url(), { secretKeyHeader, secretKey }), message);

    const headers = gateway.requests[0]?.headers ?? {};
    expect(headers["x-secret-key"]).toBe(sent ? SECRET_KEY : undefined);
    expect(Object.values(headers)).toContain(API_KEY);
    expect(Object.values(headers).includes(SECRET_KEY)).toBe(sent);
  });

  const senderCases: Array<[string, string | undefined, string]> = [
    ["uses the default sender", undefined, "ACME"],
    ["uses the message sender", "PROMO", "PROMO"],
    ["uses an explicitly empty sender", "", ""],
  ];

  test.each(senderCases)("%s", async (_name, sender, expected) => {
    await dispatcher.send(makeIntegration(gateway.url()), { ...message, ...(sender === undefined ? {} : { sender }) });

    expect(JSON.parse(gateway.requests[0]?.body ?? "")).toMatchObject({ sender: expected });
  });
});

describe("Dispatcher.send passthrough", () => {
  const bodyCases: Array<[string, string, string]> = [
    ["adds fields", '{"priority": "high"}', '{"to":"+15551234567","content":"hi","sender":"ACME","priority":"high"}'],
    ["replaces a default", '{"sender": "OTHER"}', '{"to":"+15551234567","content":"hi","sender":"OTHER"}'],
    ["removes a default with null", '{"sender": null}', '{"to":"+15551234567","content":"hi"}'],
    ["replaces arrays", '{"tags": ["a"], "options": {"flash": true}}', '{"to":"+15551234567","content":"hi","sender":"ACME","tags":["a"],"options":{"flash":true}}'],
    ["carries __proto__ as a key", '{"__proto__": {"x": 1}}', '{"to":"+15551234567","content":"hi","sender":"ACME","__proto__":{"x":1}}'],
  ];

  test.each(bodyCases)("body merge %s", async (_name, patch, expected) => {
    await dispatcher.send(makeIntegration(gateway.url()), {
      to: "+15551234567",
      content: "hi",
      passthrough: { body: JSON.parse(patch) },
    });

    expect(gateway.requests[0]?.body).toBe(expected);
    expect(({} as Record<string, unknown>)["x"]).toBeUndefined();
  });

  test("adds headers", async () => {
    await dispatcher.send(makeIntegration(gateway.url()), {
      ...message,
      passthrough: { headers: { "X-Trace-Id": "t-1", Accept: "application/json", "x-empty": "" } },
    });

    const headers = gateway.requests[0]?.headers ?? {};
    expect(headers["x-trace-id"]).toBe("t-1");
    expect(headers["accept"]).toBe("application/json");
    expect(headers["x-empty"]).toBe("");
    expect(headers["x-api-key"]).toBe(API_KEY);
  });

  const rejectedHeaders: Array<[string, string, string]> = [
    ["Host", "evil.example", "set by the HTTP client"],
    ["content-length", "5", "set by the HTTP client"],
    ["Content-Type", "text/plain", "set by the HTTP client"],
    ["Transfer-Encoding", "chunked", "set by the HTTP client"],
    ["Connection", "close", "set by the HTTP client"],
    ["Keep-Alive", "timeout=5", "set by the HTTP client"],
    ["Upgrade", "websocket", "set by the HTTP client"],
    ["TE", "trailers", "set by the HTTP client"],
    ["Trailer", "x", "set by the HTTP client"],
    ["Expect", "100-continue", "set by the HTTP client"],
    ["Proxy-Authorization", "Basic x", "set by the HTTP client"],
    ["x-api-key", "other", "carries the integration's credentials"],
    ["X-Secret-Key", "other", "carries the integration's credentials"],
    ["bad name", "v", "header name"],
    ["", "v", "header name"],
    ["X-Split", "a\r\nInjected: yes", "control characters"],
    ["X-Newline", "a\nb", "control characters"],
    ["X-Nul", "a\0b", "control characters"],
    ["X-Emoji", "\u{1F600}", "control characters"],
  ];

  test.each(rejectedHeaders)("rejects header %j", async (name, value, reason) => {
    const integration = makeIntegration(gateway.url(), { secretKeyHeader: "X-SECRET-KEY", secretKey: SECRET_KEY });
    const error = await invalidArgumentOf(
      dispatcher.send(integration, { ...message, passthrough: { headers: { [name]: value } } }),
    );

    expect(error.violations).toHaveLength(1);
    expect(error.violations[0]?.field).toBe(`passthrough.headers[${JSON.stringify(name)}]`);
    expect(error.violations[0]?.description).toContain(reason);
    expect(gateway.requests).toHaveLength(0);
  });

  test("rejects the token header with token auth", async () => {
    const integration = makeIntegration(gateway.url(), {
      authenticateByToken: true,
      authUrl: gateway.url("/auth"),
      tokenKey: "Access-Token",
    });
    const error = await invalidArgumentOf(
      dispatcher.send(integration, { ...message, passthrough: { headers: { "access-token": "forged" } } }),
    );

    expect(error.violations[0]?.field).toBe('passthrough.headers["access-token"]');
    expect(gateway.requests).toHaveLength(0);
  });

  const queryCases: Array<[string, string, Record<string, string>, string]> = [
    ["appends to a URL without a query", "/sms", { b: "x y", "k&": "v=" }, "/sms?b=x%20y&k%26=v%3D"],
    ["keeps the existing query as written", "/sms?account=7&flag&enc=a%20b+c", { b: "2" }, "/sms?account=7&flag&enc=a%20b+c&b=2"],
    ["keeps the URL unchanged for no parameters", "/sms?a=1", {}, "/sms?a=1"],
    ["encodes Unicode", "/sms", { name: "Zoë" }, "/sms?name=Zo%C3%AB"],
  ];

  test.each(queryCases)("query %s", async (_name, path, query, expected) => {
    await dispatcher.send(makeIntegration(gateway.url(path)), { ...message, passthrough: { query } });

    expect(gateway.requests[0]?.url).toBe(expected);
  });
});
