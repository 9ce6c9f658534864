import { randomBytes } from "node:crypto";
import { once } from "node:events";
import net from "node:net";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterEach, describe, expect, test } from "vitest";
import { GatewayErrorSchema } from "../../gen/smsgateway/v1/errors_pb.js";
import { IntegrationService } from "../../gen/smsgateway/v1/integration_service_pb.js";
import { SmsService } from "../../gen/smsgateway/v1/sms_service_pb.js";
import { CLIENT_KINDS } from "../helpers/clients.js";
import { ScriptedGateway } from "../helpers/scripted-gateway.js";
import { spawnServiceUntilFirstLog, startServiceProcess, type ServiceProcess } from "../helpers/service-process.js";
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
 * A TCP proxy in front of PostgreSQL that keeps each connection waiting, reading
 * nothing, until {@link release}; from then on it passes every connection through.
 */
class HoldingProxy {
  readonly #held: net.Socket[] = [];
  readonly #sockets = new Set<net.Socket>();
  #released = false;
  /** Resolves when the first connection arrives. */
  readonly connectionHeld: Promise<void>;

  private constructor(
    private readonly server: net.Server,
    private readonly target: URL,
  ) {
    this.connectionHeld = once(server, "connection").then(() => undefined);
    server.on("connection", (client: net.Socket) => {
      this.#sockets.add(client);
      if (this.#released) {
        this.#pass(client);
      } else {
        client.pause();
        this.#held.push(client);
      }
    });
  }

  static async start(target: URL): Promise<HoldingProxy> {
    const server = net.createServer();
    const proxy = new HoldingProxy(server, target);
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    return proxy;
  }

  get port(): number {
    return (this.server.address() as net.AddressInfo).port;
  }

  release(): void {
    this.#released = true;
    for (const client of this.#held.splice(0)) {
      this.#pass(client);
    }
  }

  async close(): Promise<void> {
    for (const socket of this.#sockets) {
      socket.destroy();
    }
    const closed = once(this.server, "close");
    this.server.close();
    await closed;
  }

  #pass(client: net.Socket): void {
    const upstream = net.connect(Number(this.target.port || 5432), this.target.hostname);
    this.#sockets.add(upstream);
    client.on("error", () => upstream.destroy());
    upstream.on("error", () => client.destroy());
    client.pipe(upstream);
    upstream.pipe(client);
    client.resume();
  }
}

/** Resolves once `condition` holds, checking every 10 ms; rejects after 10 s. */
async function waitUntil(condition: () => boolean): Promise<void> {
  for (let waitedMs = 0; !condition(); waitedMs += 10) {
    if (waitedMs >= 10_000) {
      throw new Error("the condition did not hold within 10 s");
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/**
 * Spawns the service on PostgreSQL through a proxy that is never released,
 * so its start-up waits for the database until the connect timeout (5 s).
 */
async function startStuckOnDatabase(env: Record<string, string>) {
  const proxy = await HoldingProxy.start(new URL(TEST_DATABASE_URL));
  cleanups.push(() => proxy.close());
  const databaseUrl = new URL(TEST_DATABASE_URL);
  databaseUrl.host = `127.0.0.1:${proxy.port}`;
  const service = await spawnServiceUntilFirstLog({
    DATABASE_URL: databaseUrl.toString(),
    DATABASE_SCHEMA: uniqueSchemaName(),
    ENCRYPTION_KEYS: `shutdown:${randomBytes(32).toString("base64")}`,
    ...env,
  });
  cleanups.push(() => service.stop());
  await proxy.connectionHeld;
  return service;
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
    // The service starts on PostgreSQL through a proxy that keeps its connections waiting, so the
    // signal surely arrives while it starts.
    const proxy = await HoldingProxy.start(new URL(TEST_DATABASE_URL));
    cleanups.push(() => proxy.close());
    const schema = uniqueSchemaName();
    cleanups.push(() => dropSchema(schema));
    const databaseUrl = new URL(TEST_DATABASE_URL);
    databaseUrl.host = `127.0.0.1:${proxy.port}`;
    const service = await spawnServiceUntilFirstLog({
      DATABASE_URL: databaseUrl.toString(),
      DATABASE_SCHEMA: schema,
      ENCRYPTION_KEYS: `shutdown:${randomBytes(32).toString("base64")}`,
    });
    cleanups.push(() => service.stop());
    await proxy.connectionHeld;

    service.child.kill("SIGTERM");
    await waitUntil(() => service.logLines.some((line) => line.msg === "shutdown requested during start-up; stopping once started"));
    proxy.release();

    expect(await service.exited).toEqual({ code: 0, signal: null });
    const messages = service.logLines.map((line) => line.msg);
    expect(messages).toContain("smsgateway listening for gRPC, Connect and gRPC-Web");
    expect(messages.at(-1)).toBe("stopped");
  }, 30_000);

  test.skipIf(SKIP_POSTGRES)("second signal ends a stuck start-up", async () => {
    const service = await startStuckOnDatabase({});

    service.child.kill("SIGTERM");
    await waitUntil(() => service.logLines.some((line) => line.msg === "shutdown requested during start-up; stopping once started"));
    service.child.kill("SIGINT");

    expect(await service.exited).toEqual({ code: 1, signal: null });
    expect(service.logLines.at(-1)?.msg).toBe("another signal during start-up; exiting without waiting for the start-up to finish");
  }, 30_000);

  test.skipIf(SKIP_POSTGRES)("grace period ends a stuck start-up", async () => {
    const service = await startStuckOnDatabase({ SHUTDOWN_GRACE_MS: "300" });

    service.child.kill("SIGTERM");

    expect(await service.exited).toEqual({ code: 1, signal: null });
    expect(service.logLines.at(-1)?.msg).toBe("start-up did not finish within SHUTDOWN_GRACE_MS of the signal; exiting");
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
