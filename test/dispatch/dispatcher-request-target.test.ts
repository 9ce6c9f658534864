import { once } from "node:events";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";

import { afterAll, beforeAll, describe, expect, test } from "vitest";

import type { SmsMessage } from "../../src/dispatch/dispatcher.js";
import { OutboundGuard } from "../../src/outbound/outbound-guard.js";
import { LOOPBACK_ALLOW_LIST, StubResolver } from "../helpers/stub-resolver.js";
import { makeDispatcher, makeIntegration } from "./fixtures.js";

// The dispatcher splits base_url into an origin and a path for undici's
// Dispatcher.request. These cases pin the request target and Host header that
// the gateway receives to what undici's top-level request(url) sent.

/** A request as the gateway received it. */
interface Received {
  target: string;
  host: string | undefined;
}

const received: Received[] = [];
const servers: Server[] = [];
let port = 0;

async function listen(host: string, onPort: number): Promise<number> {
  const server = createServer((request, response) => {
    request.resume();
    request.on("end", () => {
      received.push({ target: request.url ?? "", host: request.headers.host });
      response.writeHead(200, { "content-type": "application/json" });
      response.end('{"data":{"id":"m1"}}');
    });
  });
  servers.push(server);
  server.listen(onPort, host);
  await once(server, "listening");
  return (server.address() as AddressInfo).port;
}

const resolver = new StubResolver().set("sms.example.com", "127.0.0.1").set("sms6.example.com", "::1");
const dispatcher = makeDispatcher({ outbound: new OutboundGuard({ allowList: LOOPBACK_ALLOW_LIST, resolver }) });

beforeAll(async () => {
  port = await listen("127.0.0.1", 0);
  await listen("::1", port);
});

afterAll(async () => {
  await dispatcher.close();
  for (const server of servers) {
    server.close();
  }
});

const message: SmsMessage = { to: "+15551234567", content: "hi" };
const query = { "a b": "c&d=e", "€": "%20", empty: "" };
const encodedQuery = "a%20b=c%26d%3De&%E2%82%AC=%2520&empty=";

// [base URL with PORT for the gateway's port, passthrough query or none, request target, Host]
const cases: Array<[string, Record<string, string> | undefined, string, string]> = [
  ["http://127.0.0.1:PORT/sms", undefined, "/sms", "127.0.0.1:PORT"],
  ["http://127.0.0.1:PORT/sms/", undefined, "/sms/", "127.0.0.1:PORT"],
  ["http://127.0.0.1:PORT", undefined, "/", "127.0.0.1:PORT"],
  ["http://127.0.0.1:PORT/a/b/../c/./sms", undefined, "/a/c/sms", "127.0.0.1:PORT"],
  ["http://127.0.0.1:PORT//twice//sms", undefined, "//twice//sms", "127.0.0.1:PORT"],
  ["http://127.0.0.1:PORT/sms?", undefined, "/sms", "127.0.0.1:PORT"],
  ["http://127.0.0.1:PORT/sms?x=1&y=a%20b", undefined, "/sms?x=1&y=a%20b", "127.0.0.1:PORT"],
  ["http://127.0.0.1:PORT/sms?x=1&y=a%20b", query, `/sms?x=1&y=a%20b&${encodedQuery}`, "127.0.0.1:PORT"],
  ["http://127.0.0.1:PORT/sms/", query, `/sms/?${encodedQuery}`, "127.0.0.1:PORT"],
  ["http://127.0.0.1:PORT/s%2Fm%20s/%E2%82%AC?q=%2B1", undefined, "/s%2Fm%20s/%E2%82%AC?q=%2B1", "127.0.0.1:PORT"],
  ["http://127.0.0.1:PORT/sms path/€?q=a b", { x: "1" }, "/sms%20path/%E2%82%AC?q=a%20b&x=1", "127.0.0.1:PORT"],
  ["http://[::1]:PORT/sms?x=1", query, `/sms?x=1&${encodedQuery}`, "[::1]:PORT"],
  ["http://[0:0:0:0:0:0:0:1]:PORT/sms", undefined, "/sms", "[::1]:PORT"],
  ["http://SMS.Example.COM:PORT/v1/sms", { x: "1" }, "/v1/sms?x=1", "sms.example.com:PORT"],
  ["http://sms6.example.com:PORT/v1/sms/", undefined, "/v1/sms/", "sms6.example.com:PORT"],
];

describe("Dispatcher.send request target", () => {
  test.each(cases)("posts to %s with query %j", async (baseUrl, passthroughQuery, target, host) => {
    received.length = 0;
    const passthrough = passthroughQuery === undefined ? {} : { passthrough: { query: passthroughQuery } };

    const result = await dispatcher.send(makeIntegration(baseUrl.replace("PORT", String(port))), { ...message, ...passthrough });

    expect(result.id).toBe("m1");
    expect(received).toEqual([{ target, host: host.replace("PORT", String(port)) }]);
  });
});
