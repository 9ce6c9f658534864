import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { CredentialKind, IntegrationService, OutboundVerdict } from "../../gen/smsgateway/v1/integration_service_pb.js";
import { CLIENT_KINDS } from "../helpers/clients.js";
import type { ScriptedGateway } from "../helpers/scripted-gateway.js";
import type { TestService } from "../helpers/service.js";
import { SocketCounter } from "../helpers/socket-counter.js";
import type { StubResolver } from "../helpers/stub-resolver.js";
import {
  API_KEY,
  CREDENTIALS,
  SECRET_KEY,
  responseText,
  startTesterSetup,
  storeIntegration,
  tokenIntegration,
  uniquePath,
  type TesterSetup,
} from "./tester-fixtures.js";

let setup: TesterSetup;
let service: TestService;
let resolver: StubResolver;
let gateway: ScriptedGateway;
let gatewayPort: string;
const trapConnections = () => setup.trapConnections();

beforeAll(async () => {
  setup = await startTesterSetup();
  ({ service, resolver, gateway, gatewayPort } = setup);
  gateway.otherwise({ json: { data: { id: "must-not-be-sent" } } });
});

afterAll(async () => {
  await setup.stop();
});

describe.each(CLIENT_KINDS)("$name", (kind) => {
  const slug = kind.name.replace(/\W+/g, "-").toLowerCase();

  test("stored integration shows the request, credentials masked", async () => {
    const path = uniquePath("sms");
    const { client, close } = kind.create(IntegrationService, service.baseUrl);
    try {
      const id = await storeIntegration(client, { baseUrl: `${gateway.url(path)}?route=eu` });

      const response = await client.testIntegration({
        target: { case: "integrationId", value: id },
        to: "+15551230000",
        content: "Hello",
        sender: "AcmeBank",
        passthrough: {
          body: { priority: "high", content: "Hello from passthrough", sender: null },
          headers: { "X-Trace": "t-1" },
          query: { campaign: "spring sale" },
        },
      });

      const sms = response.smsRequest;
      expect(sms?.method).toBe("POST");
      expect(sms?.url).toBe(`${gateway.url(path)}?route=eu&campaign=spring%20sale`);
      expect(sms?.headers.map(({ name, value, credential }) => ({ name, value, credential }))).toEqual([
        { name: "content-type", value: "application/json", credential: CredentialKind.UNSPECIFIED },
        { name: "X-API-KEY", value: "****1b9d", credential: CredentialKind.API_KEY },
        { name: "X-SECRET-KEY", value: "****7a02", credential: CredentialKind.SECRET_KEY },
        { name: "X-Trace", value: "t-1", credential: CredentialKind.UNSPECIFIED },
      ]);
      expect(JSON.parse(sms?.body ?? "")).toEqual({ to: "+15551230000", content: "Hello from passthrough", priority: "high" });
      expect(response.tokenRequest).toBeUndefined();
      expect(response.placeholderFields).toEqual([]);
      expect(response.sendResult).toBeUndefined();
      expect(response.outboundChecks.map(({ field, verdict, addresses }) => ({ field, verdict, addresses }))).toEqual([
        { field: "integration.base_url", verdict: OutboundVerdict.ALLOWED, addresses: ["127.0.0.1"] },
      ]);
      expect(responseText(response)).not.toContain(API_KEY);
      expect(responseText(response)).not.toContain(SECRET_KEY);
      expect(gateway.requestsTo(path)).toHaveLength(0);
    } finally {
      close();
    }
  });

  test("empty message gets marked placeholders", async () => {
    const path = uniquePath("sms");
    const { client, close } = kind.create(IntegrationService, service.baseUrl);
    try {
      const id = await storeIntegration(client, { baseUrl: gateway.url(path) });

      const response = await client.testIntegration({ target: { case: "integrationId", value: id } });

      expect(response.placeholderFields).toEqual(["to", "content"]);
      expect(JSON.parse(response.smsRequest?.body ?? "")).toEqual({
        to: "+15555550100",
        content: "Test message from smsgateway",
        sender: "Acme",
      });
      expect(gateway.requestsTo(path)).toHaveLength(0);
    } finally {
      close();
    }
  });

  test("token authentication shows both requests", async () => {
    const path = uniquePath("sms");
    const authPath = uniquePath("auth");
    const { client, close } = kind.create(IntegrationService, service.baseUrl);
    try {
      const id = await storeIntegration(client, tokenIntegration(gateway, path, authPath));

      const response = await client.testIntegration({ target: { case: "integrationId", value: id }, to: "+15551230000", content: "Hi" });

      const token = response.tokenRequest;
      expect(token?.method).toBe("POST");
      expect(token?.url).toBe(gateway.url(authPath));
      expect(token?.body).toBe("{}");
      expect(token?.headers.map(({ name, value }) => `${name}: ${value}`)).toEqual([
        "content-type: application/json",
        "X-API-KEY: ****1b9d",
        "X-SECRET-KEY: ****7a02",
      ]);
      const tokenHeader = response.smsRequest?.headers.at(-1);
      expect(tokenHeader?.name).toBe("X-Token");
      expect(tokenHeader?.credential).toBe(CredentialKind.TOKEN);
      expect(tokenHeader?.value).toBe("<token from data.X-Token of the auth_url reply>");
      expect(response.outboundChecks.map((check) => check.field)).toEqual(["integration.auth_url", "integration.base_url"]);
      expect(response.outboundChecks.every((check) => check.verdict === OutboundVerdict.ALLOWED)).toBe(true);
      expect(responseText(response)).not.toContain(API_KEY);
      expect(gateway.requestsTo(authPath)).toHaveLength(0);
      expect(gateway.requestsTo(path)).toHaveLength(0);
    } finally {
      close();
    }
  });

  test("blocked URLs show the verdict, no connection", async () => {
    const host = `hostile-${slug}.example.com`;
    resolver.reset(host, "127.0.0.2");
    const queriesBefore = resolver.queries.length;
    const { client, close } = kind.create(IntegrationService, service.baseUrl);
    try {
      const response = await client.testIntegration({
        target: {
          case: "integration",
          value: {
            ...CREDENTIALS,
            baseUrl: `http://${host}:${gatewayPort}/sms`,
            authenticateByToken: true,
            authUrl: "http://169.254.169.254/latest/api/token",
            tokenKey: "token",
          },
        },
      });

      const [auth, base] = response.outboundChecks;
      expect(auth?.verdict).toBe(OutboundVerdict.BLOCKED);
      expect(auth?.reason).toBe("OUTBOUND_ADDRESS_BLOCKED");
      expect(auth?.metadata).toEqual({ host: "169.254.169.254", address: "169.254.169.254", range: "linkLocal" });
      expect(auth?.description).toContain("in the linkLocal range that the SSRF guard blocks");
      expect(base?.field).toBe("integration.base_url");
      expect(base?.verdict).toBe(OutboundVerdict.BLOCKED);
      expect(base?.reason).toBe("OUTBOUND_ADDRESS_BLOCKED");
      expect(base?.metadata).toEqual({ host, address: "127.0.0.2", range: "loopback" });
      expect(base?.addresses).toEqual([]);
      expect(resolver.queries.slice(queriesBefore)).toEqual([host]);
      expect(response.smsRequest?.url).toBe(`http://${host}:${gatewayPort}/sms`);
      expect(trapConnections()).toBe(0);
    } finally {
      close();
    }
  });

  test("stored URL whose DNS answer changed is blocked", async () => {
    const host = `moving-${slug}.example.com`;
    resolver.reset(host, "127.0.0.1");
    const { client, close } = kind.create(IntegrationService, service.baseUrl);
    try {
      const id = await storeIntegration(client, { baseUrl: `http://${host}:${gatewayPort}/sms` });
      resolver.reset(host, "127.0.0.2");

      const response = await client.testIntegration({ target: { case: "integrationId", value: id } });

      expect(response.outboundChecks[0]?.verdict).toBe(OutboundVerdict.BLOCKED);
      expect(response.outboundChecks[0]?.metadata).toEqual({ host, address: "127.0.0.2", range: "loopback" });
      expect(trapConnections()).toBe(0);
    } finally {
      close();
    }
  });

  test("unresolvable host is reported", async () => {
    const host = `nowhere-${slug}.example.com`;
    const { client, close } = kind.create(IntegrationService, service.baseUrl);
    try {
      const response = await client.testIntegration({
        target: { case: "integration", value: { ...CREDENTIALS, baseUrl: `https://${host}/sms` } },
      });

      const [check] = response.outboundChecks;
      expect(check?.verdict).toBe(OutboundVerdict.UNRESOLVED);
      expect(check?.metadata).toEqual({ host, code: "ENOTFOUND" });
      expect(check?.description).toContain("a send would fail with UNAVAILABLE");
    } finally {
      close();
    }
  });
});

describe("dry run over grpc-js", () => {
  const kind = CLIENT_KINDS.find((candidate) => candidate.name.startsWith("grpc-js"))!;

  test("opens no socket", async () => {
    const host = "socket-check.example.com";
    resolver.reset(host, "127.0.0.1");
    const path = uniquePath("sms");
    const sockets = new SocketCounter();
    const { client, close } = kind.create(IntegrationService, service.baseUrl);
    try {
      // The first calls open the client's one HTTP/2 connection, which the test call then reuses.
      const allowed = await storeIntegration(client, { baseUrl: `http://${host}:${gatewayPort}${path}` });
      resolver.reset(host, "127.0.0.2");

      sockets.start();
      const response = await client.testIntegration({ target: { case: "integrationId", value: allowed } });
      sockets.stop();

      expect(response.outboundChecks[0]?.verdict).toBe(OutboundVerdict.BLOCKED);
      expect(sockets.count).toBe(0);
      expect(gateway.requestsTo(path)).toHaveLength(0);
      expect(trapConnections()).toBe(0);
    } finally {
      sockets.stop();
      close();
    }
  });

  test("of an allowed URL opens no socket", async () => {
    const path = uniquePath("sms");
    const sockets = new SocketCounter();
    const { client, close } = kind.create(IntegrationService, service.baseUrl);
    try {
      const id = await storeIntegration(client, { baseUrl: gateway.url(path) });

      sockets.start();
      const response = await client.testIntegration({ target: { case: "integrationId", value: id } });
      sockets.stop();

      expect(response.outboundChecks[0]?.verdict).toBe(OutboundVerdict.ALLOWED);
      expect(sockets.count).toBe(0);
      expect(gateway.requestsTo(path)).toHaveLength(0);
    } finally {
      sockets.stop();
      close();
    }
  });
});
