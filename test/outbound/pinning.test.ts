import { execFile } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer as createHttpsServer } from "node:https";
import { createServer as createTcpServer, type AddressInfo, type Server } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import type { TLSSocket } from "node:tls";
import { promisify } from "node:util";

import { Agent, request } from "undici";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, test } from "vitest";

import type { SmsMessage } from "../../src/dispatch/dispatcher.js";
import { OutboundBlockedError } from "../../src/errors.js";
import { OutboundAllowList } from "../../src/outbound/allow-list.js";
import { OutboundGuard } from "../../src/outbound/outbound-guard.js";
import { API_KEY, gatewayErrorOf, makeDispatcher, makeIntegration } from "../dispatch/fixtures.js";
import { ScriptedGateway } from "../helpers/scripted-gateway.js";
import { SocketCounter } from "../helpers/socket-counter.js";
import { StubResolver } from "../helpers/stub-resolver.js";

// Every address in these tests is on loopback. 127.0.0.1 is allowed, and 127.0.0.2
// plays a blocked address: a check that failed to block would still not leave the
// machine, and the trap server on 127.0.0.2 counts any connection.

const message: SmsMessage = { to: "+15551234567", content: "hi" };
const ALLOW_127_0_0_1 = OutboundAllowList.parse("127.0.0.1/32");

let gateway: ScriptedGateway;
let port: number;
let trap: Server;
let trapConnections = 0;
const sockets = new SocketCounter();

beforeAll(async () => {
  sockets.start();
});

afterAll(() => {
  sockets.stop();
});

beforeEach(async () => {
  gateway = await ScriptedGateway.start();
  gateway.on("/sms", { json: { data: { id: "msg-1" } } });
  port = Number(new URL(gateway.url()).port);

  trapConnections = 0;
  trap = createTcpServer((socket) => {
    trapConnections++;
    socket.destroy();
  });
  trap.listen(port, "127.0.0.2");
  await once(trap, "listening");
});

afterEach(async () => {
  await gateway.close();
  trap.close();
  await once(trap, "close");
});

function setUp(resolver: StubResolver, allowList = ALLOW_127_0_0_1) {
  const guard = new OutboundGuard({ allowList, resolver });
  return { guard, dispatcher: makeDispatcher({ outbound: guard }) };
}

async function blockedErrorOf(promise: Promise<unknown>): Promise<OutboundBlockedError> {
  const error = await promise.then(
    () => new Error("expected the guard to block the send, but it succeeded"),
    (reason: unknown) => reason,
  );
  expect(error).toBeInstanceOf(OutboundBlockedError);
  return error as OutboundBlockedError;
}

describe("pinned connection", () => {
  test("goes to the checked address with the name in Host", async () => {
    const resolver = new StubResolver().set("sms.gateway.test", "127.0.0.1");
    const { dispatcher } = setUp(resolver);

    const result = await dispatcher.send(makeIntegration(`http://sms.gateway.test:${port}/sms`), message);
    await dispatcher.close();

    expect(result.id).toBe("msg-1");
    expect(gateway.requests).toHaveLength(1);
    expect(gateway.requests[0]?.headers.host).toBe(`sms.gateway.test:${port}`);
    // Once for the check before the send, once for the connection.
    expect(resolver.queries).toEqual(["sms.gateway.test", "sms.gateway.test"]);
  });

  test("rejects a name with one allowed and one blocked address", async () => {
    const resolver = new StubResolver().set("mixed.gateway.test", "127.0.0.1", "127.0.0.2");
    const { dispatcher } = setUp(resolver);
    const socketsBefore = sockets.count;

    const error = await blockedErrorOf(dispatcher.send(makeIntegration(`http://mixed.gateway.test:${port}/sms`), message));
    await dispatcher.close();

    expect(error.reason).toBe("OUTBOUND_ADDRESS_BLOCKED");
    expect(error.metadata).toMatchObject({ host: "mixed.gateway.test", address: "127.0.0.2", range: "loopback" });
    expect(sockets.count).toBe(socketsBefore);
    expect(gateway.requests).toHaveLength(0);
    expect(trapConnections).toBe(0);
  });

  test("rejects a DNS answer that changes between check and connect", async () => {
    const resolver = new StubResolver().set("rebind.gateway.test", "127.0.0.1").set("rebind.gateway.test", "127.0.0.2");
    const { dispatcher } = setUp(resolver);

    const error = await blockedErrorOf(dispatcher.send(makeIntegration(`http://rebind.gateway.test:${port}/sms`), message));
    await dispatcher.close();

    expect(error.field).toBe("integration.base_url");
    expect(error.message).toMatch(/^integration\.base_url: host "rebind\.gateway\.test" resolves to 127\.0\.0\.2/);
    expect(resolver.queries).toEqual(["rebind.gateway.test", "rebind.gateway.test"]);
    expect(gateway.requests).toHaveLength(0);
    expect(trapConnections).toBe(0);
  });

  test("rejects a pooled origin after its DNS answer changes", async () => {
    const resolver = new StubResolver().set("moving.gateway.test", "127.0.0.1");
    const { dispatcher } = setUp(resolver);
    const integration = makeIntegration(`http://moving.gateway.test:${port}/sms`);
    await dispatcher.send(integration, message);

    resolver.reset("moving.gateway.test", "127.0.0.2");
    const error = await blockedErrorOf(dispatcher.send(integration, message));
    await dispatcher.close();

    expect(error.metadata.address).toBe("127.0.0.2");
    expect(gateway.requests).toHaveLength(1);
    expect(trapConnections).toBe(0);
  });

  test("connector checks an address host without the pre-send check", async () => {
    const guard = new OutboundGuard({ allowList: ALLOW_127_0_0_1, resolver: new StubResolver() });
    const agent = new Agent({ connect: guard.connector({ timeout: 5_000 }) });
    const socketsBefore = sockets.count;

    const error = await request(`http://127.0.0.2:${port}/sms`, { dispatcher: agent, method: "POST", body: "{}" }).then(
      () => undefined,
      (reason: unknown) => reason,
    );
    await agent.close();

    expect(error).toBeInstanceOf(OutboundBlockedError);
    expect(sockets.count).toBe(socketsBefore);
    expect(trapConnections).toBe(0);
  });
});

describe("resolution before the send", () => {
  test.each([
    { name: "deadline", deadlineMs: 50, abort: false, failure: "timeout" },
    { name: "caller cancel", deadlineMs: undefined, abort: true, failure: "canceled" },
  ])("ends a stuck lookup on $name", async ({ deadlineMs, abort, failure }) => {
    const stuck = { resolve: () => new Promise<never>(() => undefined) };
    const guard = new OutboundGuard({ allowList: ALLOW_127_0_0_1, resolver: stuck });
    const dispatcher = makeDispatcher({ outbound: guard });
    const controller = new AbortController();
    const options = { deadlineMs, signal: controller.signal };

    const sending = gatewayErrorOf(dispatcher.send(makeIntegration(`http://stuck.gateway.test:${port}/sms`), message, options));
    if (abort) {
      controller.abort();
    }
    const error = await sending;
    await dispatcher.close();

    expect(error.info).toMatchObject({ failure, stage: "send", attempts: 0 });
    expect(gateway.requests).toHaveLength(0);
  });
});

describe("OUTBOUND_ALLOW", () => {
  test("a host name entry allows the addresses it resolves to", async () => {
    const resolver = new StubResolver().set("trusted.gateway.test", "127.0.0.1");
    const { dispatcher } = setUp(resolver, OutboundAllowList.parse("trusted.gateway.test"));

    const result = await dispatcher.send(makeIntegration(`http://trusted.gateway.test:${port}/sms`), message);
    await dispatcher.close();

    expect(result.id).toBe("msg-1");
    expect(gateway.requests[0]?.headers.host).toBe(`trusted.gateway.test:${port}`);
  });

  test("a CIDR entry leaves the host name rules in force", async () => {
    const resolver = new StubResolver().set("localhost", "127.0.0.1");
    const { dispatcher } = setUp(resolver);

    const error = await blockedErrorOf(dispatcher.send(makeIntegration(`http://localhost:${port}/sms`), message));
    await dispatcher.close();

    expect(error.reason).toBe("OUTBOUND_HOST_BLOCKED");
    expect(error.message).toContain('add "localhost" to OUTBOUND_ALLOW');
    expect(resolver.queries).toEqual([]);
    expect(gateway.requests).toHaveLength(0);
  });

  test("an address outside the CIDR entries stays blocked", async () => {
    const { dispatcher } = setUp(new StubResolver());

    const error = await blockedErrorOf(dispatcher.send(makeIntegration(`http://127.0.0.2:${port}/sms`), message));
    await dispatcher.close();

    expect(error.metadata).toMatchObject({ address: "127.0.0.2", range: "loopback" });
    expect(trapConnections).toBe(0);
  });
});

describe("redirects", () => {
  let target: ScriptedGateway;

  beforeEach(async () => {
    target = await ScriptedGateway.start();
    target.otherwise({ json: { data: { id: "stolen", token: "stolen" } } });
  });
  afterEach(() => target.close());

  test.each(["auth", "send"] as const)("from the %s request reach nothing at Location", async (stage) => {
    const targetPort = new URL(target.url()).port;
    const resolver = new StubResolver().set("sms.gateway.test", "127.0.0.1").set("other.gateway.test", "127.0.0.1");
    const { dispatcher } = setUp(resolver);
    const location = `http://other.gateway.test:${targetPort}/${stage}`;
    gateway.on("/auth", stage === "auth" ? { status: 307, headers: { location } } : { json: { data: { token: "t-1" } } });
    gateway.on("/sms", { status: 308, headers: { location } });
    const integration = makeIntegration(`http://sms.gateway.test:${port}/sms`, {
      authenticateByToken: true,
      authUrl: `http://sms.gateway.test:${port}/auth`,
      tokenKey: "token",
    });

    const error = await gatewayErrorOf(dispatcher.send(integration, message));
    await dispatcher.close();

    expect(error.info).toMatchObject({ failure: "redirected", stage });
    expect(target.requests).toHaveLength(0);
    expect(resolver.queries).not.toContain("other.gateway.test");
    expect(gateway.requests.every((r) => r.headers["x-api-key"] === API_KEY)).toBe(true);
  });
});

describe("TLS", () => {
  const name = "sms.gateway.test";
  let dir: string;
  let certificate: { key: Buffer; cert: Buffer };

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), "smsgateway-tls-"));
    const keyFile = path.join(dir, "key.pem");
    const certFile = path.join(dir, "cert.pem");
    await promisify(execFile)("openssl", [
      "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
      "-keyout", keyFile, "-out", certFile, "-days", "1",
      "-subj", `/CN=${name}`, "-addext", `subjectAltName=DNS:${name}`,
    ]);
    certificate = { key: readFileSync(keyFile), cert: readFileSync(certFile) };
  });

  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  test("keeps the name for SNI, the certificate check and Host", async () => {
    const seen: { servername: string | false | null; host: string | undefined }[] = [];
    const server = createHttpsServer(certificate, (incoming, response) => {
      seen.push({ servername: (incoming.socket as TLSSocket).servername, host: incoming.headers.host });
      response.end("ok");
    });
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    const tlsPort = (server.address() as AddressInfo).port;
    const resolver = new StubResolver().set(name, "127.0.0.1");
    const guard = new OutboundGuard({ allowList: ALLOW_127_0_0_1, resolver });
    const agent = new Agent({ connect: guard.connector({ timeout: 5_000, ca: certificate.cert }) });

    try {
      const response = await request(`https://${name}:${tlsPort}/sms`, { dispatcher: agent });

      expect(await response.body.text()).toBe("ok");
      expect(seen).toEqual([{ servername: name, host: `${name}:${tlsPort}` }]);
      expect(resolver.queries).toEqual([name]);
    } finally {
      await agent.close();
      server.close();
    }
  });
});
