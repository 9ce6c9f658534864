import http2 from "node:http2";
import { gunzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { IntegrationService } from "../../gen/smsgateway/v1/integration_service_pb.js";
import { CLIENT_KINDS } from "../helpers/clients.js";
import { startTestService, type TestService } from "../helpers/service.js";

let service: TestService;

beforeAll(async () => {
  service = await startTestService();
});

afterAll(async () => {
  await service.stop();
});

function get(path: string, headers: Record<string, string> = {}, method = "GET"): Promise<Response> {
  return fetch(`${service.baseUrl}${path}`, { method, headers });
}

describe("console assets", () => {
  test.each([
    ["/", "text/html; charset=utf-8"],
    ["/console.js", "text/javascript; charset=utf-8"],
    ["/console.css", "text/css; charset=utf-8"],
    ["/favicon.svg", "image/svg+xml"],
  ])("%s has its content type and security headers", async (path, contentType) => {
    const response = await get(path);

    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe(contentType);
    expect(response.headers.get("x-content-type-options")).toBe("nosniff");
    expect(response.headers.get("cache-control")).toBe("no-cache");
    expect(response.headers.get("etag")).toMatch(/^"[\w-]{27}"$/);
    const policy = response.headers.get("content-security-policy") ?? "";
    expect(policy).toContain("default-src 'none'");
    expect(policy).toContain("script-src 'self';");
    expect(policy).toContain("connect-src 'self';");
    expect(policy).not.toContain("unsafe-inline");
    expect((await response.arrayBuffer()).byteLength).toBeGreaterThan(0);
  });

  test("page loads only external scripts and styles", async () => {
    const html = await (await get("/")).text();

    expect(html).toContain('<script type="module" src="/console.js"></script>');
    expect(html).toContain('<link rel="stylesheet" href="/console.css">');
    expect(html).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/);
    expect(html).not.toMatch(/<style\b|\sstyle=|\son[a-z]+=/i);
  });

  test("bundle contains the API clients", async () => {
    const bundle = await (await get("/console.js", { "accept-encoding": "identity" })).text();

    // Checked with includes, so a failure does not print the whole bundle.
    expect(bundle.includes("Connect-Protocol-Version"), "Connect transport").toBe(true);
    expect(bundle.includes("Bearer "), "API key interceptor").toBe(true);
    expect(bundle.includes("smsgateway.apiKey"), "API key storage").toBe(true);
    expect(bundle.includes("sourceMappingURL"), "source map link").toBe(false);
  });

  test("bundle is gzipped only when accepted", async () => {
    const plain = await get("/console.js", { "accept-encoding": "identity" });
    const gzipDeclined = await get("/console.js", { "accept-encoding": "gzip;q=0, *" });
    const url = new URL(`${service.baseUrl}/console.js`);
    const raw = await new Promise<{ headers: http2.IncomingHttpHeaders; body: Buffer }>((resolve, reject) => {
      const session = http2.connect(url.origin);
      session.on("error", reject);
      const stream = session.request({ ":path": url.pathname, "accept-encoding": "gzip, br" });
      const chunks: Buffer[] = [];
      let headers: http2.IncomingHttpHeaders = {};
      stream.on("response", (received) => (headers = received));
      stream.on("data", (chunk: Buffer) => chunks.push(chunk));
      stream.on("end", () => {
        session.close();
        resolve({ headers, body: Buffer.concat(chunks) });
      });
      stream.on("error", reject);
    });
    const plainBody = Buffer.from(await plain.arrayBuffer());

    expect(plain.headers.get("content-encoding")).toBeNull();
    expect(plain.headers.get("vary")).toBe("accept-encoding");
    expect(gzipDeclined.headers.get("content-encoding")).toBeNull();
    expect(raw.headers[":status"]).toBe(200);
    expect(raw.headers["content-encoding"]).toBe("gzip");
    expect(Number(raw.headers["content-length"])).toBe(raw.body.length);
    expect(raw.body.length).toBeLessThan(plainBody.length / 2);
    expect(gunzipSync(raw.body).equals(plainBody)).toBe(true);
  });

  test("matching If-None-Match gets 304", async () => {
    const first = await get("/");
    const etag = first.headers.get("etag") ?? "";
    const again = await get("/", { "if-none-match": `"other", ${etag}` });

    expect(again.status).toBe(304);
    expect(again.headers.get("etag")).toBe(etag);
    expect(await again.text()).toBe("");
  });

  test("HEAD has headers and no body", async () => {
    const head = await get("/", { "accept-encoding": "identity" }, "HEAD");
    const full = await get("/", { "accept-encoding": "identity" });

    expect(head.status).toBe(200);
    expect(head.headers.get("content-length")).toBe(String((await full.arrayBuffer()).byteLength));
    expect(await head.text()).toBe("");
  });

  test("query string is ignored", async () => {
    expect((await get("/?from=bookmark")).status).toBe(200);
  });

  test("other methods get 405", async () => {
    const response = await get("/", { "content-type": "text/plain" }, "POST");

    expect(response.status).toBe(405);
    expect(response.headers.get("allow")).toBe("GET, HEAD");
  });

  test.each(["/index.html", "/console.js.map", "/web/main.ts", "/nope", "/smsgateway.v1.Nope/Call"])("%s is 404", async (path) => {
    expect((await get(path)).status).toBe(404);
  });
});

describe("API beside the console", () => {
  test("Connect JSON call works", async () => {
    const response = await fetch(`${service.baseUrl}/smsgateway.v1.IntegrationService/ListIntegrations`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{}",
    });

    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({});
  });

  test.each(CLIENT_KINDS.map((kind) => [kind.name, kind] as const))("%s reaches the API", async (_name, kind) => {
    const { client, close } = kind.create(IntegrationService, service.baseUrl);
    try {
      const response = await client.listIntegrations({});
      expect(response.integrations).toEqual([]);
    } finally {
      close();
    }
  });
});
