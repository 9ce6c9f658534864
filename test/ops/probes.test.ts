import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import http from "node:http";
import net, { type AddressInfo } from "node:net";
import { afterAll, afterEach, beforeAll, describe, expect, test } from "vitest";
import { createLogger } from "../../src/logger.js";
import { ServiceMetrics } from "../../src/observability/metrics.js";
import { CorsPolicy } from "../../src/server/cors.js";
import { createFrontHandler } from "../../src/server/front-handler.js";
import { ReadinessProbe } from "../../src/server/readiness.js";
import { ServiceLifecycle } from "../../src/server/service-lifecycle.js";
import { KyselyIntegrationStore } from "../../src/store/kysely-integration-store.js";
import { openStore } from "../../src/store/open-store.js";
import { createPostgresDatabase } from "../../src/store/postgres-database.js";
import { closedLoopbackUrl } from "../helpers/scripted-gateway.js";
import { startTestService, type TestService } from "../helpers/service.js";

let service: TestService;

beforeAll(async () => {
  service = await startTestService();
});

afterAll(async () => {
  await service.stop();
});

async function getJson(url: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(url);
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

describe("probes of the running service", () => {
  test("/healthz is alive", async () => {
    expect(await getJson(`${service.baseUrl}/healthz`)).toEqual({ status: 200, body: { status: "alive" } });
  });

  test("/readyz is ready with storage up", async () => {
    expect(await getJson(`${service.baseUrl}/readyz`)).toEqual({ status: 200, body: { status: "ready" } });
  });

  test("/readyz ignores the query", async () => {
    expect((await getJson(`${service.baseUrl}/readyz?verbose=1`)).status).toBe(200);
  });
});

/**
 * Serves the front handler with real probes in front of a given store, on a
 * loopback port, the way the app does. RPC paths return 404.
 */
async function startProbeServer(
  store: { ping(): Promise<void> },
  lifecycle = new ServiceLifecycle(),
  pingTimeoutMs?: number,
): Promise<{ url: string; logLines: Record<string, unknown>[]; close(): Promise<void> }> {
  const logLines: Record<string, unknown>[] = [];
  const logger = createLogger("info", { write: (line: string) => logLines.push(JSON.parse(line) as Record<string, unknown>) });
  const handler = createFrontHandler({
    rpc: (_request, response) => {
      response.statusCode = 404;
      response.end();
    },
    readiness: new ReadinessProbe(store, lifecycle, logger, pingTimeoutMs),
    metrics: new ServiceMetrics(),
    cors: new CorsPolicy([]),
    logger,
  });
  const server = http.createServer(handler);
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    logLines,
    close: async () => {
      server.closeAllConnections();
      server.close();
      await once(server, "close");
    },
  };
}

describe("/readyz when not ready", () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) {
      await cleanup();
    }
  });

  test("503 while shutting down", async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), "smsgateway-probes-"));
    const { store } = await openStore({ dataDir, logger: createLogger("silent") });
    cleanups.push(async () => {
      await store.close();
      rmSync(dataDir, { recursive: true, force: true });
    });
    const lifecycle = new ServiceLifecycle();
    const probes = await startProbeServer(store, lifecycle);
    cleanups.push(probes.close);
    expect((await getJson(`${probes.url}/readyz`)).status).toBe(200);

    lifecycle.beginShutdown();

    expect(await getJson(`${probes.url}/readyz`)).toEqual({
      status: 503,
      body: { status: "not_ready", reason: "the service is shutting down" },
    });
    expect((await getJson(`${probes.url}/healthz`)).status).toBe(200);
  });

  test("503 when PostgreSQL refuses connections", async () => {
    const url = (await closedLoopbackUrl("/test")).replace("http://", "postgres://postgres@");
    const db = await createPostgresDatabase(url, "refusing test database", createLogger("silent"));
    cleanups.push(() => db.destroy());
    const probes = await startProbeServer(new KyselyIntegrationStore(db));
    cleanups.push(probes.close);

    const first = await getJson(`${probes.url}/readyz`);
    const second = await getJson(`${probes.url}/readyz`);

    expect(first).toEqual({ status: 503, body: { status: "not_ready", reason: "storage is unreachable (ECONNREFUSED)" } });
    expect(second.status).toBe(503);
    const transitions = probes.logLines.filter((line) => line.msg === "not ready");
    expect(transitions).toHaveLength(1);
    expect(transitions[0]).toMatchObject({ reason: "storage is unreachable (ECONNREFUSED)", err: { code: "ECONNREFUSED" } });
    expect(probes.logLines).toHaveLength(1);
    expect(JSON.stringify(probes.logLines)).not.toContain("password");
  });

  test("503 when storage does not answer", async () => {
    // Accepts connections and never speaks, like a database host that hangs.
    const sockets = new Set<net.Socket>();
    const silent = net.createServer((socket) => sockets.add(socket));
    silent.listen(0, "127.0.0.1");
    await once(silent, "listening");
    const { port } = silent.address() as AddressInfo;
    const db = await createPostgresDatabase(`postgres://postgres@127.0.0.1:${port}/test`, "silent test database", createLogger("silent"));
    cleanups.push(() => db.destroy());
    // Runs before db.destroy, so the pending connection fails at once instead of waiting for its timeout.
    cleanups.push(async () => {
      silent.close();
      for (const socket of sockets) {
        socket.destroy();
      }
    });
    const probes = await startProbeServer(new KyselyIntegrationStore(db), new ServiceLifecycle(), 200);
    cleanups.push(probes.close);

    expect(await getJson(`${probes.url}/readyz`)).toEqual({
      status: 503,
      body: { status: "not_ready", reason: "storage did not respond within 200 ms" },
    });
  });
});
