import http from "node:http";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { isLoopbackAuthority } from "../../src/server/loopback-host.js";
import { startTestService, type TestService } from "../helpers/service.js";

describe("isLoopbackAuthority", () => {
  test.each([
    ["127.0.0.1:8080", true],
    ["127.0.0.1", true],
    ["127.1.2.3:1", true],
    ["localhost:8080", true],
    ["LOCALHOST.", true],
    ["app.localhost:8080", true],
    ["[::1]:8080", true],
    ["[::1]", true],
    ["rebind.evil.example:8080", false],
    ["localhost.evil.example", false],
    ["127.0.0.1.nip.example", false],
    ["10.0.0.1:8080", false],
    ["[::ffff:127.0.0.1]:8080", false],
    ["", false],
  ])("%s is %s", (authority, expected) => {
    expect(isLoopbackAuthority(authority)).toBe(expected);
  });

  test("missing authority is rejected", () => {
    expect(isLoopbackAuthority(undefined)).toBe(false);
  });
});

describe("service without API keys", () => {
  let service: TestService;

  beforeAll(async () => {
    service = await startTestService();
  });

  afterAll(async () => {
    await service.stop();
  });

  /** Sends a Connect JSON call with the given Host header over HTTP/1.1. */
  function callWithHost(host: string): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      const request = http.request(
        {
          host: "127.0.0.1",
          port: service.app.server.port,
          method: "POST",
          path: "/smsgateway.v1.IntegrationService/ListIntegrations",
          headers: { host, "content-type": "application/json", origin: `http://${host}` },
        },
        (response) => {
          let body = "";
          response.setEncoding("utf8");
          response.on("data", (chunk: string) => (body += chunk));
          response.on("end", () => resolve({ status: response.statusCode ?? 0, body }));
        },
      );
      request.on("error", reject);
      request.end("{}");
    });
  }

  test("rebound host name is rejected", async () => {
    const result = await callWithHost("rebind.evil.example:8080");

    expect(result.status).toBe(403);
    expect(result.body).toContain("API_KEYS");
  });

  test("loopback host is served", async () => {
    const result = await callWithHost(`127.0.0.1:${service.app.server.port}`);

    expect(result.status).toBe(200);
  });
});
