import { randomBytes, randomUUID } from "node:crypto";

import { Code, ConnectError } from "@connectrpc/connect";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { IntegrationService } from "../../gen/smsgateway/v1/integration_service_pb.js";
import { SmsService } from "../../gen/smsgateway/v1/sms_service_pb.js";
import { CLIENT_KINDS } from "../helpers/clients.js";
import { eventually } from "../helpers/eventually.js";
import { ScriptedGateway, type RecordedRequest } from "../helpers/scripted-gateway.js";
import { startServiceProcess, type ServiceProcess } from "../helpers/service-process.js";
import {
  assertPostgresReachable,
  dropSchema,
  SKIP_POSTGRES,
  TEST_DATABASE_URL,
  uniqueSchemaName,
} from "../store/postgres-test-database.js";

/** How soon a change made through one replica must reach the other's sends: the service's promise. */
const CONVERGENCE_MS = 1_000;

/** Generous bound for a replica to notice a lost listener and connect again, backoff included. */
const RECONNECT_MS = 15_000;

/** Bound for a replica to start: tsx compiles the service first. */
const START_MS = 30_000;

const LISTENING = "listening for integration changes; integrations are cached in memory";
const LISTENING_AGAIN = "listening for integration changes again; the integration cache restarts empty";
const LOST = "lost the connection that listens for integration changes; sends read integrations from the database until it is back";

/** Rounds of simultaneous sends with one idempotency key. */
const IDEMPOTENCY_ROUNDS = 8;

function clientKind(name: string) {
  const kind = CLIENT_KINDS.find((candidate) => candidate.name === name);
  if (kind === undefined) {
    throw new Error(`no client kind named ${name}`);
  }
  return kind;
}

/** A replica's process and its clients; SMS go through a different client kind on each replica. */
interface Replica {
  process: ServiceProcess;
  integrations: ReturnType<typeof integrationClient>;
  sms: ReturnType<typeof smsClient>;
}

function integrationClient(baseUrl: string) {
  return clientKind("Connect over HTTP/1.1").create(IntegrationService, baseUrl);
}

function smsClient(baseUrl: string, kind: string) {
  return clientKind(kind).create(SmsService, baseUrl);
}

function replicaOf(process: ServiceProcess, smsKind: string): Replica {
  return { process, integrations: integrationClient(process.baseUrl), sms: smsClient(process.baseUrl, smsKind) };
}

/** Returns the path an SMS request was posted to, and its sender. */
function received(request: RecordedRequest): { path: string; sender: string } {
  return { path: request.url, sender: (JSON.parse(request.body) as { sender: string }).sender };
}

describe.skipIf(SKIP_POSTGRES)("two replicas on one PostgreSQL schema", () => {
  const schema = uniqueSchemaName();
  let gateway: ScriptedGateway;
  let a: Replica;
  let b: Replica;
  let issued = 0;

  beforeAll(async () => {
    await assertPostgresReachable();
    gateway = await ScriptedGateway.start();
    gateway.otherwise(() => ({ json: { data: { id: `gw-${++issued}` } } }));

    const env = {
      DATABASE_URL: TEST_DATABASE_URL,
      DATABASE_SCHEMA: schema,
      ENCRYPTION_KEYS: `shared:${randomBytes(32).toString("base64")}`,
      OUTBOUND_ALLOW: "127.0.0.1",
    };
    const [first, second] = await Promise.all([startServiceProcess(env), startServiceProcess(env)]);
    a = replicaOf(first, "grpc-js (gRPC over HTTP/2)");
    b = replicaOf(second, "Connect over HTTP/2");
    await Promise.all([a, b].map((replica) => replica.process.waitForLog((line) => line.msg === LISTENING, START_MS)));
  }, START_MS * 2);

  afterAll(async () => {
    for (const replica of [a, b]) {
      replica?.integrations.close();
      replica?.sms.close();
      await replica?.process.stop();
    }
    await gateway?.close();
    await dropSchema(schema);
  });

  /** Creates an integration through replica A. */
  async function configure(id: string, path: string, defaultSender: string): Promise<void> {
    await a.integrations.client.configureIntegration({
      integration: { id, baseUrl: gateway.url(path), apiKeyHeader: "X-API-KEY", apiKey: "replica-key-0123456789", defaultSender },
      allowMissing: true,
    });
  }

  /** Sends one SMS through a replica and returns what the gateway received for it. */
  async function sendThrough(replica: Replica, integrationId: string): Promise<{ path: string; sender: string }> {
    const content = `replica test ${randomUUID()}`;
    await replica.sms.client.sendSms({ integrationId, to: "+15550001111", content });
    const request = gateway.requests.find((candidate) => (JSON.parse(candidate.body) as { content: string }).content === content);
    return received(request!);
  }

  /** Sends one SMS through a replica and returns the error code, or undefined when it was sent. */
  async function sendCode(replica: Replica, integrationId: string): Promise<Code | undefined> {
    return replica.sms.client.sendSms({ integrationId, to: "+15550001111", content: "code probe" }).then(
      () => undefined,
      (error: unknown) => ConnectError.from(error).code,
    );
  }

  /**
   * Changes the sender in the database without notifying anyone, as if the
   * notification were lost, so a send that still uses the old sender shows
   * that it came from the replica's memory.
   */
  async function changeSenderSilently(id: string, sender: string): Promise<void> {
    const client = new pg.Client({ connectionString: TEST_DATABASE_URL, connectionTimeoutMillis: 5_000 });
    const table = `${pg.escapeIdentifier(schema)}.integrations`;
    await client.connect();
    try {
      await client.query("begin");
      await client.query(`alter table ${table} disable trigger integrations_notify_change`);
      // Every write of the service increments the version, so this one does too.
      await client.query(`update ${table} set default_sender = $1, version = version + 1 where id = $2`, [sender, id]);
      await client.query(`alter table ${table} enable trigger integrations_notify_change`);
      await client.query("commit");
    } finally {
      await client.end();
    }
  }

  /** Changes an integration's sender through replica A. */
  async function setSenderThroughA(id: string, defaultSender: string): Promise<void> {
    await a.integrations.client.configureIntegration({ integration: { id, defaultSender }, updateMask: { paths: ["default_sender"] } });
  }

  /** Waits until replica B sends with the sender, for at most `timeoutMs`. */
  async function waitForSenderOnB(id: string, sender: string, timeoutMs: number): Promise<void> {
    await eventually(() => sendThrough(b, id), (sent) => sent.sender === sender, `B sends as ${sender}`, { timeoutMs });
  }

  /** Shows that replica B sends from its cache: a silent change in the database does not reach it. */
  async function expectCachedOnB(id: string, cachedSender: string): Promise<void> {
    await sendThrough(b, id);
    await changeSenderSilently(id, "Silently changed");
    expect(await sendThrough(b, id)).toMatchObject({ sender: cachedSender });
  }

  test("change through A reaches B's next sends", async () => {
    await configure("shared", "/v1", "Before");
    expect(await sendThrough(b, "shared")).toEqual({ path: "/v1", sender: "Before" });
    await expectCachedOnB("shared", "Before");

    await a.integrations.client.configureIntegration({
      integration: { id: "shared", baseUrl: gateway.url("/v2"), defaultSender: "After" },
      updateMask: { paths: ["base_url", "default_sender"] },
    });

    await eventually(
      () => sendThrough(b, "shared"),
      (sent) => sent.path === "/v2" && sent.sender === "After",
      "B sends with the new base_url and default_sender",
      { timeoutMs: CONVERGENCE_MS },
    );
    expect(await sendThrough(b, "shared")).toEqual({ path: "/v2", sender: "After" });

    await a.integrations.client.deleteIntegration({ id: "shared" });

    // A send that still succeeds, before the notification arrives, is polled again.
    await eventually(
      () => sendCode(b, "shared"),
      (code) => code === Code.NotFound,
      "B reports the deleted integration as NOT_FOUND",
      { timeoutMs: CONVERGENCE_MS },
    );
  });

  test("same idempotency key at both replicas sends once", async () => {
    await configure("keyed", "/keyed", "Keyed");
    // Slow replies make the two sends of a round overlap.
    gateway.on("/keyed", async () => {
      await new Promise((resolve) => setTimeout(resolve, 150));
      return { json: { data: { id: `gw-${++issued}` } } };
    });
    const request = { integrationId: "keyed", to: "+15550002222", content: "one SMS" };
    await Promise.all([a.sms.client.sendSms(request), b.sms.client.sendSms(request)]);

    for (let round = 0; round < IDEMPOTENCY_ROUNDS; round++) {
      const idempotencyKey = randomUUID();
      const [fromA, fromB] = await Promise.all([
        a.sms.client.sendSms({ ...request, idempotencyKey }),
        b.sms.client.sendSms({ ...request, idempotencyKey }),
      ]);

      const posts = gateway.requests.filter((received) => received.headers["idempotency-key"] === idempotencyKey);
      expect(posts).toHaveLength(1);
      expect(fromA.id).toBe(fromB.id);
      expect([fromA.replayed, fromB.replayed].sort()).toEqual([false, true]);
    }
  });

  test("id renamed by hand leaves B's cache", async () => {
    await configure("before-rename", "/renamed", "Renamed");
    expect(await sendThrough(b, "before-rename")).toMatchObject({ sender: "Renamed" });

    const client = new pg.Client({ connectionString: TEST_DATABASE_URL, connectionTimeoutMillis: 5_000 });
    await client.connect();
    try {
      await client.query(`update ${pg.escapeIdentifier(schema)}.integrations set id = 'after-rename' where id = 'before-rename'`);
    } finally {
      await client.end();
    }

    await eventually(
      () => sendCode(b, "before-rename"),
      (code) => code === Code.NotFound,
      "B reports the old id as NOT_FOUND",
      { timeoutMs: CONVERGENCE_MS },
    );
  });

  test("partial update keeps unseen change", async () => {
    await configure("edited", "/edited", "Before");
    await expectCachedOnB("edited", "Before");
    // The row now has "Silently changed" while B's cache has "Before", as before a change notification arrives.
    // B changes only the display name, so the stored sender must stay.
    await b.integrations.client.configureIntegration({
      integration: { id: "edited", displayName: "Renamed through B" },
      updateMask: { paths: ["display_name"] },
    });

    const { integration } = await a.integrations.client.getIntegration({ id: "edited" });
    expect(integration).toMatchObject({ displayName: "Renamed through B", defaultSender: "Silently changed" });
  });

  test("B converges after its listener is terminated", async () => {
    await configure("resilient", "/r1", "Before");
    await expectCachedOnB("resilient", "Before");
    const listening = [...b.process.logLines].reverse().find((line) => line.msg === LISTENING || line.msg === LISTENING_AGAIN);
    const firstPid = listening?.backendPid;
    expect(typeof firstPid).toBe("number");

    const client = new pg.Client({ connectionString: TEST_DATABASE_URL, connectionTimeoutMillis: 5_000 });
    await client.connect();
    try {
      const { rows } = await client.query<{ terminated: boolean }>("select pg_terminate_backend($1) as terminated", [firstPid]);
      expect(rows[0]?.terminated).toBe(true);
    } finally {
      await client.end();
    }
    await setSenderThroughA("resilient", "After termination");

    await waitForSenderOnB("resilient", "After termination", RECONNECT_MS);
    await b.process.waitForLog((line) => line.msg === LOST, RECONNECT_MS);
    const recovered = await b.process.waitForLog((line) => line.msg === LISTENING_AGAIN, RECONNECT_MS);
    expect(recovered.backendPid).not.toBe(firstPid);

    await expectCachedOnB("resilient", "After termination");
    await setSenderThroughA("resilient", "After recovery");
    await waitForSenderOnB("resilient", "After recovery", CONVERGENCE_MS);
  });
});
