import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { request } from "undici";
import { startTestService, type TestService } from "../helpers/service.js";
import { createApiKey } from "../security/security-fixtures.js";

const APP_ORIGIN = "https://app.example.com";
const GET_INTEGRATION = "/smsgateway.v1.IntegrationService/GetIntegration";

/** Headers the browser clients send, listed in the preflight request. */
const CLIENT_HEADERS = [
  "connect-protocol-version",
  "connect-timeout-ms",
  "x-grpc-web",
  "grpc-timeout",
  "x-user-agent",
  "authorization",
  "content-type",
  "x-request-id",
];

/** The browser app's key: the service refuses CORS without API keys. */
const BROWSER_KEY = createApiKey("browser-app", "integrations:read");
const AUTHORIZATION = `Bearer ${BROWSER_KEY.key}`;

let listed: TestService;
let anyOrigin: TestService;
let noCors: TestService;

beforeAll(async () => {
  listed = await startTestService({ corsAllowedOrigins: [APP_ORIGIN, "http://localhost:5173"], apiKeys: BROWSER_KEY.entry });
  anyOrigin = await startTestService({ corsAllowedOrigins: ["*"], apiKeys: BROWSER_KEY.entry });
  noCors = await startTestService({ apiKeys: BROWSER_KEY.entry });
});

afterAll(async () => {
  await Promise.all([listed.stop(), anyOrigin.stop(), noCors.stop()]);
});

async function preflight(service: TestService, origin: string) {
  const response = await request(`${service.baseUrl}${GET_INTEGRATION}`, {
    method: "OPTIONS",
    headers: {
      origin,
      "access-control-request-method": "POST",
      "access-control-request-headers": CLIENT_HEADERS.join(","),
    },
  });
  await response.body.dump();
  return response;
}

/** Sends a Connect JSON GetIntegration for an id that does not exist, from a browser origin. */
async function connectCall(service: TestService, origin: string) {
  const response = await request(`${service.baseUrl}${GET_INTEGRATION}`, {
    method: "POST",
    headers: { origin, authorization: AUTHORIZATION, "content-type": "application/json", "connect-protocol-version": "1" },
    body: JSON.stringify({ id: "int_missing" }),
  });
  return { response, body: (await response.body.json()) as Record<string, unknown> };
}

function listOf(value: string | string[] | undefined): string[] {
  return String(value ?? "")
    .split(",")
    .map((name) => name.trim().toLowerCase())
    .filter((name) => name !== "");
}

describe("CORS with listed origins", () => {
  test("preflight allows the client headers", async () => {
    const response = await preflight(listed, APP_ORIGIN);

    expect(response.statusCode).toBe(204);
    expect(response.headers["access-control-allow-origin"]).toBe(APP_ORIGIN);
    expect(listOf(response.headers["access-control-allow-methods"])).toEqual(["post", "get"]);
    expect(listOf(response.headers["access-control-allow-headers"])).toEqual(expect.arrayContaining(CLIENT_HEADERS));
    expect(response.headers["access-control-max-age"]).toBe("7200");
    expect(response.headers["vary"]).toBe("Origin");
  });

  test("preflight from another origin gets no grant", async () => {
    const response = await preflight(listed, "https://evil.example.net");

    expect(response.statusCode).toBe(204);
    expect(response.headers["access-control-allow-origin"]).toBeUndefined();
    expect(response.headers["access-control-allow-headers"]).toBeUndefined();
  });

  test("errors expose code, details and request id", async () => {
    const { response, body } = await connectCall(listed, "http://localhost:5173");

    expect(response.statusCode).toBe(404);
    expect(body.code).toBe("not_found");
    expect(response.headers["access-control-allow-origin"]).toBe("http://localhost:5173");
    expect(listOf(response.headers["access-control-expose-headers"])).toEqual(
      expect.arrayContaining(["grpc-status", "grpc-message", "grpc-status-details-bin", "x-request-id"]),
    );
    expect(response.headers["x-request-id"]).toEqual(expect.any(String));
  });

  test("gRPC-Web error headers are exposed", async () => {
    const response = await request(`${listed.baseUrl}${GET_INTEGRATION}`, {
      method: "POST",
      headers: { origin: APP_ORIGIN, authorization: AUTHORIZATION, "content-type": "application/grpc-web+proto", "x-grpc-web": "1" },
      // One uncompressed frame holding GetIntegrationRequest{id: "int_missing"}.
      body: Buffer.concat([Buffer.from([0, 0, 0, 0, 13]), Buffer.from([0x0a, 11]), Buffer.from("int_missing")]),
    });
    const body = Buffer.from(await response.body.arrayBuffer());

    // gRPC-Web sends the status in a trailer frame (flag 0x80) at the end of the body.
    const trailerStart = body.lastIndexOf(Buffer.from([0x80]));
    expect(body.subarray(trailerStart + 5).toString("latin1")).toContain("grpc-status: 5");
    expect(response.headers["access-control-allow-origin"]).toBe(APP_ORIGIN);
    expect(listOf(response.headers["access-control-expose-headers"])).toContain("grpc-status");
  });

  test("calls from other origins get no grant", async () => {
    const { response } = await connectCall(listed, "https://evil.example.net");

    expect(response.headers["access-control-allow-origin"]).toBeUndefined();
    expect(response.headers["access-control-expose-headers"]).toBeUndefined();
  });
});

describe("CORS with any origin", () => {
  test("grants every origin with *", async () => {
    const pre = await preflight(anyOrigin, "https://anything.example.org");
    const { response } = await connectCall(anyOrigin, "https://anything.example.org");

    expect(pre.headers["access-control-allow-origin"]).toBe("*");
    expect(response.headers["access-control-allow-origin"]).toBe("*");
    expect(response.headers["vary"]).toBeUndefined();
  });
});

describe("CORS off by default", () => {
  test("sends no CORS headers", async () => {
    const pre = await preflight(noCors, APP_ORIGIN);
    const { response } = await connectCall(noCors, APP_ORIGIN);

    expect(pre.headers["access-control-allow-origin"]).toBeUndefined();
    expect(response.headers["access-control-allow-origin"]).toBeUndefined();
    expect(response.headers["access-control-expose-headers"]).toBeUndefined();
  });
});
