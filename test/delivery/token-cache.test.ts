import { beforeEach, describe, expect, test } from "vitest";

import { readJwtExpiry, tokenExpiry } from "../../src/delivery/token-lifetime.js";
import type { SmsMessage } from "../../src/dispatch/dispatcher.js";
import type { IntegrationFields } from "../../src/domain/integration.js";
import type { ReplyScript, ScriptedReply } from "../helpers/scripted-gateway.js";
import { gatewayErrorOf } from "../dispatch/fixtures.js";
import {
  accepted,
  delayed,
  inOrder,
  integrationFields,
  setUpDeliveryTests,
  type Harness,
  type HarnessOptions,
} from "./fixtures.js";

const message: SmsMessage = { to: "+15551234567", content: "hi" };
const START = new Date("2026-03-01T12:00:00.000Z");

const env = setUpDeliveryTests();
let now: Date;

beforeEach(() => {
  env.gateway.on("/sms", accepted());
  now = START;
});

function tokenFields(overrides: Partial<IntegrationFields> = {}): Partial<IntegrationFields> & { baseUrl: string } {
  return {
    baseUrl: env.gateway.url("/sms"),
    authenticateByToken: true,
    authUrl: env.gateway.url("/auth"),
    tokenKey: "token",
    ...overrides,
  };
}

function harness(options: Partial<HarnessOptions> = {}): Promise<Harness> {
  return env.harness({ integration: tokenFields(), now: () => now, ...options });
}

/** Builds an auth reply script that numbers its tokens: `tok-1`, `tok-2`, ... */
function numberedTokens(extra: (index: number) => Record<string, unknown> = () => ({})): ReplyScript {
  let issued = 0;
  return () => {
    issued += 1;
    return { json: { data: { token: `tok-${issued}`, ...extra(issued) } } };
  };
}

/** Builds an auth reply script that numbers its tokens, marks each single-use with `expires_in` 0, and replies after 50 ms. */
function slowSingleUseTokens(): ReplyScript {
  let issued = 0;
  return async () => {
    issued += 1;
    const token = `tok-${issued}`;
    await new Promise((resolve) => setTimeout(resolve, 50));
    return { json: { data: { token, expires_in: 0 } } };
  };
}

/** Returns the token header of each SMS request. */
function smsTokens(): Array<string | string[] | undefined> {
  return env.gateway.requestsTo("/sms").map((request) => request.headers["token"]);
}

/** Builds an unsigned JWT with the given `exp` (epoch seconds). */
function jwt(exp: number): string {
  const encode = (value: object) => Buffer.from(JSON.stringify(value)).toString("base64url");
  return `${encode({ alg: "none", typ: "JWT" })}.${encode({ sub: "sms", exp })}.c2lnbmF0dXJl`;
}

async function sendTimes(harnessed: Harness, count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    await harnessed.delivery.send(harnessed.integration, message);
  }
}

describe("Token caching", () => {
  test("fetches a token per send with lifetime 0", async () => {
    env.gateway.on("/auth", numberedTokens());
    const harnessed = await harness();

    await sendTimes(harnessed, 3);

    expect(env.gateway.requestsTo("/auth")).toHaveLength(3);
    expect(smsTokens()).toEqual(["tok-1", "tok-2", "tok-3"]);
  });

  test("reuses a token for TOKEN_LIFETIME_SECONDS", async () => {
    env.gateway.on("/auth", numberedTokens());
    const harnessed = await harness({ settings: { tokenLifetimeSeconds: 60 } });

    await sendTimes(harnessed, 5);
    now = new Date(START.getTime() + 60_000);
    await sendTimes(harnessed, 1);

    expect(env.gateway.requestsTo("/auth")).toHaveLength(2);
    expect(smsTokens()).toEqual(["tok-1", "tok-1", "tok-1", "tok-1", "tok-1", "tok-2"]);
  });

  test("prefers the integration's token_lifetime_seconds to the setting", async () => {
    env.gateway.on("/auth", numberedTokens());
    const harnessed = await harness({
      integration: tokenFields({ tokenLifetimeSeconds: 0 }),
      settings: { tokenLifetimeSeconds: 60 },
    });

    await sendTimes(harnessed, 2);

    expect(smsTokens()).toEqual(["tok-1", "tok-2"]);
  });

  test.each([
    ["data.expires_in", () => ({ expires_in: 120 })],
    ["data.expires_in as text", () => ({ expires_in: "120" })],
  ])("respects %s", async (_name, extra) => {
    env.gateway.on("/auth", numberedTokens(extra));
    const harnessed = await harness();

    await sendTimes(harnessed, 3);
    // 10% of the lifetime before expiry, the token is refreshed.
    now = new Date(START.getTime() + 107_000);
    await sendTimes(harnessed, 1);
    now = new Date(START.getTime() + 109_000);
    await sendTimes(harnessed, 1);

    expect(smsTokens()).toEqual(["tok-1", "tok-1", "tok-1", "tok-1", "tok-2"]);
  });

  test("respects a top-level expires_in", async () => {
    let issued = 0;
    env.gateway.on("/auth", () => {
      issued += 1;
      return { json: { data: { token: `tok-${issued}` }, expires_in: 60 } };
    });
    const harnessed = await harness();

    await sendTimes(harnessed, 2);

    expect(smsTokens()).toEqual(["tok-1", "tok-1"]);
  });

  test("lets expires_in 0 override a configured lifetime", async () => {
    env.gateway.on("/auth", numberedTokens(() => ({ expires_in: 0 })));
    const harnessed = await harness({ settings: { tokenLifetimeSeconds: 600 } });

    await sendTimes(harnessed, 2);

    expect(smsTokens()).toEqual(["tok-1", "tok-2"]);
  });

  test("respects a JWT exp", async () => {
    const exp = START.getTime() / 1000 + 3_600;
    const tokens = [jwt(exp), jwt(exp + 3_600)];
    env.gateway.on("/auth", inOrder(...tokens.map((token): ScriptedReply => ({ json: { data: { token } } }))));
    const harnessed = await harness();

    await sendTimes(harnessed, 2);
    now = new Date((exp - 10) * 1000);
    await sendTimes(harnessed, 1);

    expect(smsTokens()).toEqual([tokens[0], tokens[0], tokens[1]]);
  });

  test("refreshes a cached token once after a 401", async () => {
    env.gateway.on("/auth", numberedTokens());
    env.gateway.on("/sms", (request) =>
      request.headers["token"] === "tok-1" && env.gateway.requestsTo("/sms").length > 1
        ? { status: 401, json: { error: "token expired" } }
        : accepted(),
    );
    const harnessed = await harness({ settings: { tokenLifetimeSeconds: 600 } });

    await harnessed.delivery.send(harnessed.integration, message);
    const second = await harnessed.delivery.send(harnessed.integration, message);

    expect(second.attempts).toBe(2);
    expect(env.gateway.requestsTo("/auth")).toHaveLength(2);
    expect(smsTokens()).toEqual(["tok-1", "tok-1", "tok-2"]);
  });

  test("does not refresh a fresh token after a 401", async () => {
    env.gateway.on("/auth", numberedTokens());
    env.gateway.on("/sms", { status: 401, json: { error: "no" } });
    const harnessed = await harness({ settings: { tokenLifetimeSeconds: 600 } });

    const error = await gatewayErrorOf(harnessed.delivery.send(harnessed.integration, message));

    expect(error.info).toMatchObject({ failure: "credentials_refused", attempts: 1 });
    expect(env.gateway.requestsTo("/auth")).toHaveLength(1);
  });

  test("refreshes only once when the new token is refused too", async () => {
    env.gateway.on("/auth", numberedTokens());
    env.gateway.on("/sms", inOrder(accepted(), { status: 401 }));
    const harnessed = await harness({ settings: { tokenLifetimeSeconds: 600 } });
    await harnessed.delivery.send(harnessed.integration, message);

    const error = await gatewayErrorOf(harnessed.delivery.send(harnessed.integration, message));

    expect(error.info).toMatchObject({ failure: "credentials_refused", attempts: 2 });
    expect(env.gateway.requestsTo("/auth")).toHaveLength(2);
  });

  test("shares one token request among concurrent sends", async () => {
    env.gateway.on("/auth", delayed(100, { json: { data: { token: "tok-shared" } } }));
    const harnessed = await harness({ settings: { tokenLifetimeSeconds: 60 } });

    await Promise.all(Array.from({ length: 10 }, () => harnessed.delivery.send(harnessed.integration, message)));

    expect(env.gateway.requestsTo("/auth")).toHaveLength(1);
    expect(smsTokens()).toEqual(Array(10).fill("tok-shared"));
  });

  test.each([
    ["expires_in 0", 0],
    ["expires_in 0 over a configured lifetime", 600],
  ])("shares no token after %s", async (_name, tokenLifetimeSeconds) => {
    env.gateway.on("/auth", slowSingleUseTokens());
    const harnessed = await harness({ settings: { tokenLifetimeSeconds } });
    await sendTimes(harnessed, 1);

    await Promise.all(Array.from({ length: 3 }, () => harnessed.delivery.send(harnessed.integration, message)));

    expect(env.gateway.requestsTo("/auth")).toHaveLength(4);
    expect(new Set(smsTokens()).size).toBe(4);
  });

  test("single-use shared token goes to one send", async () => {
    // The configured lifetime lets the first sends share a request, before any reply sets an expiry.
    env.gateway.on("/auth", slowSingleUseTokens());
    const harnessed = await harness({ settings: { tokenLifetimeSeconds: 600 } });

    await Promise.all(Array.from({ length: 3 }, () => harnessed.delivery.send(harnessed.integration, message)));

    expect(env.gateway.requestsTo("/auth")).toHaveLength(3);
    expect(new Set(smsTokens()).size).toBe(3);
  });

  test("fails every waiting send when the shared token request fails", async () => {
    env.gateway.on("/auth", delayed(100, { status: 400, json: { error: "bad key" } }));
    const harnessed = await harness({ settings: { tokenLifetimeSeconds: 60 } });

    const outcomes = await Promise.allSettled(
      Array.from({ length: 4 }, () => harnessed.delivery.send(harnessed.integration, message)),
    );

    expect(outcomes.every((outcome) => outcome.status === "rejected")).toBe(true);
    expect(env.gateway.requestsTo("/auth")).toHaveLength(1);
    expect(env.gateway.requestsTo("/sms")).toHaveLength(0);
  });

  test("fetches a new token after the integration changes", async () => {
    env.gateway.on("/auth", numberedTokens());
    const harnessed = await harness({ settings: { tokenLifetimeSeconds: 600 } });
    await harnessed.delivery.send(harnessed.integration, message);

    const changed = await harnessed.store.update("acme", integrationFields({ ...tokenFields(), apiKey: "rotated-key-1234" }));
    await harnessed.delivery.send(changed, message);

    expect(smsTokens()).toEqual(["tok-1", "tok-2"]);
    expect(env.gateway.requestsTo("/auth")[1]?.headers["x-api-key"]).toBe("rotated-key-1234");
  });
});

describe("tokenExpiry", () => {
  const nowMs = START.getTime();

  test.each([
    ["expires_in", { token: "t", expiresInSeconds: 100 }, 0, nowMs + 90_000, true],
    ["expires_in over the skew cap", { token: "t", expiresInSeconds: 3_600 }, 0, nowMs + 3_570_000, true],
    ["expires_in 0", { token: "t", expiresInSeconds: 0 }, 600, nowMs, true],
    ["a JWT exp", { token: jwt(nowMs / 1000 + 100) }, 0, nowMs + 90_000, true],
    ["a JWT exp in the past", { token: jwt(nowMs / 1000 - 5) }, 600, nowMs, true],
    ["the configured lifetime", { token: "t" }, 200, nowMs + 180_000, false],
    ["no lifetime", { token: "t" }, 0, nowMs, false],
  ])("uses %s", (_name, fetched, configuredSeconds, refreshAtMs, fromReply) => {
    expect(tokenExpiry(fetched, configuredSeconds, nowMs)).toEqual({ refreshAtMs, fromReply });
  });
});

describe("readJwtExpiry", () => {
  test.each([
    ["an opaque token", "abc123", undefined],
    ["two parts", "a.b", undefined],
    ["a payload that is not JSON", "a.bm90IGpzb24.c", undefined],
    ["a payload without exp", `a.${Buffer.from('{"sub":"x"}').toString("base64url")}.c`, undefined],
    ["a text exp", `a.${Buffer.from('{"exp":"1700000000"}').toString("base64url")}.c`, undefined],
    ["a payload that is an array", `a.${Buffer.from("[1]").toString("base64url")}.c`, undefined],
    ["a numeric exp", jwt(1_700_000_000), 1_700_000_000],
  ])("reads %s", (_name, token, expected) => {
    expect(readJwtExpiry(token)).toBe(expected);
  });
});
