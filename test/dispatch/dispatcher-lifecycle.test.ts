import { afterEach, beforeEach, describe, expect, test } from "vitest";

import type { SmsMessage } from "../../src/dispatch/dispatcher.js";
import { ScriptedGateway } from "../helpers/scripted-gateway.js";
import {
  API_KEY,
  captureLogger,
  gatewayErrorOf,
  makeDispatcher,
  makeIntegration,
  SECRET_KEY,
} from "./fixtures.js";

let gateway: ScriptedGateway;

beforeEach(async () => {
  gateway = await ScriptedGateway.start();
  gateway.on("/sms", { json: { data: { id: "m1" } } });
});
afterEach(() => gateway.close());

const message: SmsMessage = { to: "+15551234567", content: "Your code is 1234" };

describe("Dispatcher connections", () => {
  test("reuses one kept-alive connection", async () => {
    const dispatcher = makeDispatcher({ maxConnectionsPerOrigin: 1 });

    for (let i = 0; i < 3; i++) {
      await dispatcher.send(makeIntegration(gateway.url()), message);
    }

    const ports = new Set(gateway.requests.map((request) => request.remotePort));
    expect(gateway.requests).toHaveLength(3);
    expect(ports.size).toBe(1);
    await dispatcher.close();
  });

  test("caps connections per origin", async () => {
    const dispatcher = makeDispatcher({ maxConnectionsPerOrigin: 2 });
    gateway.on("/sms", async () => {
      await new Promise((resolve) => setTimeout(resolve, 50));
      return { json: { data: { id: "m1" } } };
    });

    const sends = Array.from({ length: 6 }, () => dispatcher.send(makeIntegration(gateway.url()), message));
    const results = await Promise.all(sends);

    expect(results.map((result) => result.id)).toEqual(Array(6).fill("m1"));
    expect(new Set(gateway.requests.map((request) => request.remotePort)).size).toBe(2);
    await dispatcher.close();
  });

  test("fails sends after close", async () => {
    const dispatcher = makeDispatcher();
    await dispatcher.close();

    const error = await gatewayErrorOf(dispatcher.send(makeIntegration(gateway.url()), message));

    expect(error.info).toMatchObject({ failure: "unavailable", attempts: 0 });
    expect(error.message).toContain("the dispatcher is closed");
    expect(gateway.requests).toHaveLength(0);
  });
});

describe("Dispatcher logging", () => {
  test("logs without secrets or phone numbers", async () => {
    const { logger, lines } = captureLogger();
    const dispatcher = makeDispatcher({ logger });
    const integration = makeIntegration(gateway.url(), { secretKeyHeader: "X-SECRET-KEY", secretKey: SECRET_KEY });

    await dispatcher.send(integration, message);
    gateway.on("/sms", { status: 401, body: `bad key ${API_KEY}` });
    await gatewayErrorOf(dispatcher.send(integration, message));
    await dispatcher.close();

    const entries = lines.map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(entries.map((entry) => entry["msg"])).toEqual([
      "gateway replied",
      "SMS accepted by the gateway",
      "gateway replied",
      "gateway request failed",
    ]);
    expect(entries[0]).toMatchObject({ integrationId: "acme", stage: "send", status: 200, component: "dispatcher" });
    expect(entries[1]).toMatchObject({ integrationId: "acme", to: "***567", status: 200, warnings: [] });
    expect(entries[3]).toMatchObject({ integrationId: "acme", failure: "credentials_refused", status: 401 });
    const text = lines.join("");
    expect(text).not.toContain(API_KEY);
    expect(text).not.toContain(SECRET_KEY);
    expect(text).not.toContain("5551234567");
    expect(text).not.toContain("Your code");
  });
});
