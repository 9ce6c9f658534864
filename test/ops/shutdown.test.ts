import { randomBytes } from "node:crypto";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterEach, describe, expect, test } from "vitest";
import { GatewayErrorSchema } from "../../gen/smsgateway/v1/errors_pb.js";
import { IntegrationService } from "../../gen/smsgateway/v1/integration_service_pb.js";
import { SmsService } from "../../gen/smsgateway/v1/sms_service_pb.js";
import { CLIENT_KINDS } from "../helpers/clients.js";
import { eventually } from "../helpers/eventually.js";
import { ScriptedGateway } from "../helpers/scripted-gateway.js";
import {
  spawnServiceUntilFirstLog,
  startServiceProcess,
  type ServiceProcess,
  type StartingService,
} from "../helpers/service-process.js";
import { STORAGE_CLOSE_TIMEOUT_MS } from "../../src/server/graceful-shutdown.js";
import { FreezableTcpProxy } from "../store/freezable-tcp-proxy.js";
import { dropSchema, SKIP_POSTGRES, TEST_DATABASE_URL, uniqueSchemaName } from "../store/postgres-test-database.js";

const cleanups: (() => Promise<void> | void)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) {
    await cleanup();
  }
});

/** Starts the service as a child process that the test's clean-up stops. */
async function startProcess(env: Record<string, string> = {}): Promise<ServiceProcess> {
  const service = await startServiceProcess(env);
  cleanups.push(() => service.stop());
  return service;
}

function clientKind(name: string) {
  const kind = CLIENT_KINDS.find((candidate) => candidate.name === name);
  if (kind === undefined) {
    throw new Error(`no client kind named ${name}`);
  }
  return kind;
}

async function configureIntegration(baseUrl: string, gatewayUrl: string): Promise<string> {
  const integrations = clientKind("Connect over HTTP/1.1").create(IntegrationService, baseUrl);
  const { integration } = await integrations.client.configureIntegration({
    integration: { baseUrl: gatewayUrl, apiKeyHeader: "X-API-KEY", apiKey: "shutdown-key-0001", defaultSender: "Acme" },
  });
  return integration?.id ?? "";
}

type Outcome = { content: string; ok: true; id: string } | { content: string; ok: false; error: unknown };

/**
 * Starts a proxy to the test database and returns it with the settings that
 * put the service behind it, on a schema of its own that the clean-up drops.
 */
async function databaseBehindProxy(): Promise<{ proxy: FreezableTcpProxy; env: Record<string, string> }> {
  const target = new URL(TEST_DATABASE_URL);
  const proxy = await FreezableTcpProxy.start({ host: target.hostname, port: Number(target.port || 5432) });
  cleanups.push(() => proxy.close());
  const databaseUrl = new URL(TEST_DATABASE_URL);
  databaseUrl.host = `127.0.0.1:${proxy.port}`;
  const schema = uniqueSchemaName();
  cleanups.push(() => dropSchema(schema));
  const env = {
    DATABASE_URL: databaseUrl.toString(),
    DATABASE_SCHEMA: schema,
    ENCRYPTION_KEYS: `shutdown:${randomBytes(32).toString("base64")}`,
  };
  return { proxy, env };
}

/**
 * Spawns the service on PostgreSQL through a frozen proxy, so that its
 * start-up waits for the database until the proxy is released or the
 * connect timeout (5 s) passes.
 */
async function startHeldOnDatabase(env: Record<string, string> = {}): Promise<{ service: StartingService; proxy: FreezableTcpProxy }> {
  const database = await databaseBehindProxy();
  database.proxy.freeze();
  const service = await spawnServiceUntilFirstLog({ ...database.env, ...env });
  cleanups.push(() => service.stop());
  await database.proxy.connected();
  return { service, proxy: database.proxy };
}

/** Resolves once the service has logged that a signal arrived while it started. */
async function signalLogged(service: StartingService): Promise<void> {
  await eventually(
    async () => service.logLines.some((line) => line.msg === "shutdown requested during start-up; stopping once started"),
    (logged) => logged,
    "log line of the signal during start-up",
    { timeoutMs: 10_000 },
  );
}

describe("graceful shutdown", () => {
  test("SIGTERM during a burst loses no send", async () => {
    const service = await startProcess();
    const gateway = await ScriptedGateway.start();
    cleanups.push(() => gateway.close());

    const SIGTERM_AFTER = 8;
    const issued = new Map<string, string>();
    let signalled = false;
    gateway.on("/sms", async (request) => {
      const { content } = JSON.parse(request.body) as { content: string };
      if (gateway.requests.length === SIGTERM_AFTER) {
        // Sent while this request is held, so at least one send is in flight.
        signalled = true;
        service.child.kill("SIGTERM");
      }
      await new Promise((resolve) => setTimeout(resolve, 400));
      const id = `gw-${issued.size + 1}`;
      issued.set(content, id);
      return { json: { data: { id } } };
    });
    const integrationId = await configureIntegration(service.baseUrl, gateway.url("/sms"));

    const kinds = ["Connect over HTTP/2", "Connect over HTTP/1.1", "grpc-js (gRPC over HTTP/2)"].map(clientKind);
    const clients = kinds.map((kind) => kind.create(SmsService, service.baseUrl));
    cleanups.push(() => clients.forEach((client) => client.close()));

    const sends: Promise<Outcome>[] = [];
    let exited = false;
    void service.exited.then(() => (exited = true));
    for (let i = 0; i < 150 && !exited; i++) {
      const content = `burst message ${i}`;
      const { client } = clients[i % clients.length]!;
      sends.push(
        client.sendSms({ integrationId, to: "+15550002222", content }, { timeoutMs: 30_000 }).then(
          (response): Outcome => ({ content, ok: true, id: response.id }),
          (error: unknown): Outcome => ({ content, ok: false, error }),
        ),
      );
      await new Promise((resolve) => setTimeout(resolve, 20));
    }

    const exit = await service.exited;
    const outcomes = await Promise.all(sends);

    expect(signalled).toBe(true);
    expect(exit).toEqual({ code: 0, signal: null });
    const succeeded = outcomes.filter((outcome) => outcome.ok);
    const failed = outcomes.filter((outcome) => !outcome.ok);
    expect(succeeded.length).toBeGreaterThanOrEqual(SIGTERM_AFTER);
    for (const outcome of succeeded) {
      expect(issued.get(outcome.content)).toBe(outcome.id);
    }
    // Every SMS that reached the gateway got an OK response: none was lost half-way.
    const reachedGateway = gateway.requests.map((request) => (JSON.parse(request.body) as { content: string }).content);
    expect(new Set(succeeded.map((outcome) => outcome.content))).toEqual(new Set(reachedGateway));
    // Calls after SIGTERM fail without reaching the gateway (checked above), and
    // each one settles with a code. Refused connections and calls rejected
    // during shutdown are UNAVAILABLE. A call can also race the close of its
    // connection: a request written to an idle HTTP/1.1 connection as the
    // server closes it, or an HTTP/2 stream opened before the client read
    // GOAWAY. The client library then reports the transport error, as ABORTED
    // (ECONNRESET) or, in connect-node 2.1, as INTERNAL (EPIPE, REFUSED_STREAM).
    for (const outcome of failed) {
      expect(outcome.error).toBeInstanceOf(ConnectError);
      expect([Code.Unavailable, Code.Aborted, Code.Internal]).toContain((outcome.error as ConnectError).code);
    }

    const messages = service.logLines.map((line) => line.msg);
    expect(messages).toContain("shutdown started: not serving, no new calls");
    expect(messages).toContain("storage closed");
    expect(messages.at(-1)).toBe("stopped");
    expect(messages).not.toContain("shutdown grace period ended: cancelling the calls in progress");
  });

  test.skipIf(SKIP_POSTGRES)("SIGTERM during start-up exits cleanly", async () => {
    // The proxy keeps the database connection waiting, so the signal surely arrives while the service starts.
    const { service, proxy } = await startHeldOnDatabase();

    service.child.kill("SIGTERM");
    await signalLogged(service);
    proxy.release();

    expect(await service.exited).toEqual({ code: 0, signal: null });
    const messages = service.logLines.map((line) => line.msg);
    expect(messages).toContain("smsgateway listening for gRPC, Connect and gRPC-Web");
    expect(messages.at(-1)).toBe("stopped");
  }, 30_000);

  test.skipIf(SKIP_POSTGRES)("second signal ends a stuck start-up", async () => {
    const { service } = await startHeldOnDatabase();

    service.child.kill("SIGTERM");
    await signalLogged(service);
    service.child.kill("SIGINT");

    expect(await service.exited).toEqual({ code: 1, signal: null });
    expect(service.logLines.at(-1)?.msg).toBe("another signal during start-up; exiting without waiting for the start-up to finish");
  }, 30_000);

  test.skipIf(SKIP_POSTGRES)("grace period ends a stuck start-up", async () => {
    const { service } = await startHeldOnDatabase({ SHUTDOWN_GRACE_MS: "300" });

    service.child.kill("SIGTERM");

    expect(await service.exited).toEqual({ code: 1, signal: null });
    expect(service.logLines.at(-1)?.msg).toBe("start-up did not finish within SHUTDOWN_GRACE_MS of the signal; exiting");
  }, 30_000);

  test.skipIf(SKIP_POSTGRES)("silent database cannot hold the exit", async () => {
    const { proxy, env } = await databaseBehindProxy();
    const service = await startProcess(env);
    // The change listener keeps a connection open too, so both it and the pool must give up.
    await service.waitForLog((line) => String(line.msg).startsWith("listening for integration changes"), 10_000);

    proxy.freeze();
    const signalledAt = Date.now();
    service.child.kill("SIGTERM");

    expect(await service.exited).toEqual({ code: 0, signal: null });
    expect(Date.now() - signalledAt).toBeLessThan(STORAGE_CLOSE_TIMEOUT_MS + 3_000);
    const messages = service.logLines.map((line) => line.msg);
    expect(messages).toContain("storage did not close in time; exiting without waiting for the database");
    expect(messages).not.toContain("storage closed");
    expect(messages.at(-1)).toBe("stopped");
  }, 30_000);

  test("SIGINT stops an idle service", async () => {
    const service = await startProcess();

    service.child.kill("SIGINT");

    expect(await service.exited).toEqual({ code: 0, signal: null });
    expect(service.logLines.find((line) => line.msg === "shutting down")).toMatchObject({ signal: "SIGINT", graceMs: 20_000 });
  });

  // The service itself must end the call. A client whose connection is cut
  // reports a status of its own ("Call cancelled", "Session closed with error
  // code 8"), without the detail that the gateway may have sent the SMS.
  test.each(["Connect over HTTP/2", "grpc-js (gRPC over HTTP/2)"])("grace period ends with CANCELLED over %s", async (kindName) => {
    const service = await startProcess({ SHUTDOWN_GRACE_MS: "300" });
    const gateway = await ScriptedGateway.start();
    cleanups.push(() => gateway.close());
    gateway.on("/sms", { hang: true });
    const integrationId = await configureIntegration(service.baseUrl, gateway.url("/sms"));
    const sms = clientKind(kindName).create(SmsService, service.baseUrl);
    cleanups.push(() => sms.close());

    const sending = sms.client.sendSms({ integrationId, to: "+15550003333", content: "held" }, { timeoutMs: 30_000 }).then(
      () => undefined,
      (error: unknown) => ConnectError.from(error),
    );
    for (let i = 0; i < 1_000 && gateway.requests.length === 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    service.child.kill("SIGTERM");

    expect(await service.exited).toEqual({ code: 0, signal: null });
    const error = await sending;
    expect(error?.code).toBe(Code.Canceled);
    expect(error?.findDetails(GatewayErrorSchema)).toEqual([expect.objectContaining({ outcomeUnknown: true })]);
    // The caller did not cancel, so the message must not say it did.
    expect(error?.rawMessage).toMatch(/^The service was shutting down and cut the SMS request of integration /);
    expect(error?.rawMessage).not.toContain("caller");
    expect(service.logLines.map((line) => line.msg)).toContain("shutdown grace period ended: cancelling the calls in progress");
  });
});
