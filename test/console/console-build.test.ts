import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Writable } from "node:stream";
import { afterEach, describe, expect, test } from "vitest";
import { createLogger } from "../../src/logger.js";
import { withHttpRoutes, type HttpRoute } from "../../src/server/http-routes.js";
import { startServer, type RequestHandler, type RunningServer } from "../../src/server/one-port-server.js";
import { buildWebConsole, webConsoleRoutes } from "../../src/server/web-console.js";

const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) {
    await cleanup();
  }
});

/** Serves the routes in front of a fallback that responds with 418, on a loopback port. */
async function serve(routes: readonly HttpRoute[]): Promise<string> {
  const fallback: RequestHandler = (_request, response) => {
    (response as { writeHead(status: number): unknown }).writeHead(418);
    response.end();
  };
  const server: RunningServer = await startServer(withHttpRoutes(routes, fallback), { host: "127.0.0.1", port: 0 });
  cleanups.push(() => server.close(1_000));
  return `http://127.0.0.1:${server.port}`;
}

function capturedLogger(): { logger: ReturnType<typeof createLogger>; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      lines.push(...chunk.toString("utf8").split("\n").filter(Boolean).map((line) => JSON.parse(line) as Record<string, unknown>));
      callback();
    },
  });
  return { logger: createLogger("debug", sink), lines };
}

describe("web console build", () => {
  test("bundles the sources into memory", async () => {
    const assets = await buildWebConsole();

    expect(assets.map((asset) => asset.path)).toEqual(["/", "/console.js", "/console.css", "/favicon.svg"]);
    for (const asset of assets) {
      expect(asset.body.length, asset.path).toBeGreaterThan(0);
    }
  });

  test("failed build serves 503 and logs why", async () => {
    const sourceDir = mkdtempSync(path.join(tmpdir(), "smsgateway-web-"));
    cleanups.push(() => rmSync(sourceDir, { recursive: true, force: true }));
    writeFileSync(path.join(sourceDir, "tsconfig.json"), "{}");
    writeFileSync(path.join(sourceDir, "main.ts"), "const broken = ;\n");
    writeFileSync(path.join(sourceDir, "console.css"), "body {}\n");
    const { logger, lines } = capturedLogger();

    const baseUrl = await serve(webConsoleRoutes(logger, sourceDir));
    const page = await fetch(`${baseUrl}/`);
    const script = await fetch(`${baseUrl}/console.js`);

    expect(page.status).toBe(503);
    expect(await page.text()).toContain("build failed");
    expect(page.headers.get("x-content-type-options")).toBe("nosniff");
    expect(script.status).toBe(503);
    const logged = lines.find((line) => line.msg === "web console build failed; its paths respond with 503 until a restart");
    expect(logged?.level).toBe(50);
    expect(JSON.stringify(logged?.err)).toContain("main.ts");
  });
});

describe("HTTP routes", () => {
  const answer =
    (text: string): RequestHandler =>
    (_request, response) => {
      response.end(text);
    };

  test("match the exact path and pass others on", async () => {
    const baseUrl = await serve([{ path: "/ping", handler: answer("pong") }]);

    const matched = await fetch(`${baseUrl}/ping?verbose=1`);
    const longer = await fetch(`${baseUrl}/ping/more`);
    const rpc = await fetch(`${baseUrl}/smsgateway.v1.SmsService/SendSms`, { method: "POST" });

    expect(await matched.text()).toBe("pong");
    expect(longer.status).toBe(418);
    expect(rpc.status).toBe(418);
  });

  test("reject a duplicate path", () => {
    const fallback = answer("fallback");

    expect(() => withHttpRoutes([{ path: "/a", handler: fallback }, { path: "/a", handler: fallback }], fallback)).toThrow(
      "two HTTP routes for the path /a",
    );
  });

  test("reject an RPC-shaped path", () => {
    const fallback = answer("fallback");

    expect(() => withHttpRoutes([{ path: "/smsgateway.v1.SmsService/SendSms", handler: fallback }], fallback)).toThrow(
      "has the form of an RPC path",
    );
  });
});
