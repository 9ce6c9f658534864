import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { Writable } from "node:stream";

import Database from "better-sqlite3";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { IntegrationService } from "../../gen/smsgateway/v1/integration_service_pb.js";
import { SmsService } from "../../gen/smsgateway/v1/sms_service_pb.js";
import { runReencryptCommand } from "../../src/security/reencrypt-command.js";
import { CLIENT_KINDS } from "../helpers/clients.js";
import { ScriptedGateway } from "../helpers/scripted-gateway.js";
import { runServiceUntilExit, startServiceProcess, type ServiceProcess } from "../helpers/service-process.js";
import { assertPostgresReachable, dropSchema, SKIP_POSTGRES, TEST_DATABASE_URL, uniqueSchemaName } from "../store/postgres-test-database.js";
import { keyEntry } from "./security-fixtures.js";

/** Bound for a service process to start: the bundle loads and migrates first. */
const START_MS = 30_000;

const ERROR = 50;
const INFO = 30;

/** Returns the base64 key of a `keyId:base64key` entry. */
function material(entry: string): string {
  return entry.slice(entry.indexOf(":") + 1);
}

/** Runs the re-encrypt command in this process with `env` and returns its exit code and error output. */
async function reencrypt(env: Record<string, string>): Promise<{ code: number; err: string }> {
  const err: string[] = [];
  const logs = new Writable({ write: (_chunk, _encoding, callback) => callback() });
  const code = await runReencryptCommand([], env, { out: () => undefined, err: (line) => err.push(line), logs });
  return { code, err: err.join("\n") };
}

/** Creates an integration through a running service, sending to `gatewayUrl`. */
async function configure(service: ServiceProcess, id: string, gatewayUrl: string): Promise<void> {
  const { client, close } = CLIENT_KINDS[0]!.create(IntegrationService, service.baseUrl);
  try {
    await client.configureIntegration({
      integration: { id, baseUrl: gatewayUrl, apiKeyHeader: "X-API-KEY", apiKey: `api-${id}-0123456789`, defaultSender: "Acme" },
      allowMissing: true,
    });
  } finally {
    close();
  }
}

/** Sends one SMS through a running service and returns the message id that the gateway gave. */
async function send(service: ServiceProcess, integrationId: string): Promise<string> {
  const { client, close } = CLIENT_KINDS[0]!.create(SmsService, service.baseUrl);
  try {
    return (await client.sendSms({ integrationId, to: "+15550001111", content: "key check" })).id;
  } finally {
    close();
  }
}

describe("wrong key at start-up on SQLite", () => {
  let dataDir: string;

  beforeAll(async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), "smsgateway-key-check-"));
  });

  afterAll(async () => {
    await rm(dataDir, { recursive: true, force: true });
  });

  test("a mistyped key exits 2 naming its id", async () => {
    const p1 = keyEntry("p1");
    const p2 = keyEntry("p2");
    const mistyped = keyEntry("p2");
    const first = await runServiceUntilExit([], { DATA_DIR: dataDir, ENCRYPTION_KEYS: `${p1},${p2}` });
    expect(first.code, first.stderr).toBeNull();

    const second = await runServiceUntilExit([], { DATA_DIR: dataDir, ENCRYPTION_KEYS: `${p1},${mistyped}` });

    expect(second.code).toBe(2);
    expect(second.stderr).toMatch(
      /^smsgateway: key id "p2" in ENCRYPTION_KEYS is not the key that was first used under this id in sqlite:\S+smsgateway\.db: /,
    );
    expect(second.stderr).toContain("Configure the key that was first used under this id; a new key needs a new key id. ");
    expect(second.stderr).toContain('stop that process, correct its key, delete the row of "p2" from encryption_key_checks, and start again.\n');
    expect(second.stdout).toContain('"failed to start"');
    expect(second.stdout).not.toContain('"address"');
    const database = new Database(path.join(dataDir, "smsgateway.db"), { readonly: true });
    const checks = database.prepare("select check_value from encryption_key_checks").all() as { check_value: string }[];
    database.close();
    expect(checks).toHaveLength(2);
    for (const secret of [material(p1), material(p2), material(mistyped), ...checks.map((row) => row.check_value)]) {
      expect(second.stdout).not.toContain(secret);
      expect(second.stderr).not.toContain(secret);
      expect(first.stdout).not.toContain(secret);
    }
  });

  test("a flag names the flag", async () => {
    const recorded = await runServiceUntilExit([], { DATA_DIR: dataDir, ENCRYPTION_KEYS: keyEntry("flagged") });
    expect(recorded.code, recorded.stderr).toBeNull();

    const error = await runServiceUntilExit(["--encryption-keys", keyEntry("flagged")], { DATA_DIR: dataDir });

    expect(error.code).toBe(2);
    expect(error.stderr).toMatch(/^smsgateway: key id "flagged" in --encryption-keys is not the key/);
  });
});

describe("SQLite back on the generated key after a rotation", () => {
  let gateway: ScriptedGateway;
  let dataDir: string;
  const services: ServiceProcess[] = [];

  beforeAll(async () => {
    gateway = await ScriptedGateway.start();
    gateway.otherwise(() => ({ json: { data: { id: "gw-1" } } }));
    dataDir = await mkdtemp(path.join(tmpdir(), "smsgateway-key-check-"));
  });

  afterAll(async () => {
    for (const service of services) {
      await service.stop();
    }
    await gateway?.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  async function start(env: Record<string, string>): Promise<ServiceProcess> {
    const service = await startServiceProcess({ DATA_DIR: dataDir, ...env });
    services.push(service);
    return service;
  }

  async function stop(service: ServiceProcess): Promise<void> {
    service.child.kill("SIGTERM");
    await service.exited;
  }

  test("logs one error for the key left out", async () => {
    const generated = await start({});
    await configure(generated, "one", gateway.url("/sms"));
    await configure(generated, "two", gateway.url("/sms"));
    await stop(generated);
    const fileKey = (await readFile(path.join(dataDir, "encryption-keys"), "utf8")).split("\n").find((line) => line.startsWith("local-"))!;
    const k2 = keyEntry("k2");

    // Rotate to ENCRYPTION_KEYS: the file's key first, then the new one, and re-encrypt.
    await stop(await start({ ENCRYPTION_KEYS: `${fileKey},${k2}` }));
    expect(await reencrypt({ DATA_DIR: dataDir, ENCRYPTION_KEYS: `${fileKey},${k2}` })).toEqual({ code: 0, err: "" });
    const rotated = await start({ ENCRYPTION_KEYS: k2 });
    expect(await send(rotated, "one")).toBe("gw-1");
    await stop(rotated);
    // Back without the variable: the generated file's key alone.
    const fallback = await start({});
    const readyz = await fetch(`${fallback.baseUrl}/readyz`);

    const fileUnused = rotated.logLines.find((line) => typeof line.msg === "string" && line.msg.startsWith("no stored secret uses the keys of the generated key file"));
    expect(fileUnused).toMatchObject({ level: INFO, keyIds: [fileKey.slice(0, fileKey.indexOf(":"))] });
    expect(rotated.logLines.filter((line) => line.level === ERROR)).toEqual([]);
    const errors = fallback.logLines.filter((line) => line.level === ERROR);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ keyIds: ["k2"], integrations: 2 });
    expect(errors[0]?.msg).toContain("sends through these integrations fail with FAILED_PRECONDITION");
    expect(readyz.status).toBe(200);
  });
});

describe.skipIf(SKIP_POSTGRES)("replicas on PostgreSQL", () => {
  let gateway: ScriptedGateway;
  const schemas: string[] = [];
  const services: ServiceProcess[] = [];

  beforeAll(async () => {
    await assertPostgresReachable();
    gateway = await ScriptedGateway.start();
    let issued = 0;
    gateway.otherwise(() => ({ json: { data: { id: `gw-${++issued}` } } }));
  });

  afterAll(async () => {
    for (const service of services) {
      await service.stop();
    }
    await gateway?.close();
    for (const schema of schemas) {
      await dropSchema(schema);
    }
  });

  function newSchema(): string {
    const schema = uniqueSchemaName();
    schemas.push(schema);
    return schema;
  }

  test("of two first starts with different keys, one exits 2", async () => {
    const schema = newSchema();
    const p1 = keyEntry("p1");
    const env = (p2: string) => ({ DATABASE_URL: TEST_DATABASE_URL, DATABASE_SCHEMA: schema, ENCRYPTION_KEYS: `${p1},${p2}` });

    const outcomes = await Promise.all([runServiceUntilExit([], env(keyEntry("p2"))), runServiceUntilExit([], env(keyEntry("p2")))]);

    const codes = outcomes.map((outcome) => outcome.code).sort();
    expect(codes, outcomes.map((outcome) => outcome.stderr).join("\n")).toEqual([2, null]);
    const loser = outcomes.find((outcome) => outcome.code === 2)!;
    expect(loser.stderr).toMatch(/^smsgateway: key id "p2" in ENCRYPTION_KEYS is not the key that was first used under this id in postgres:/);
  }, START_MS);

  test("rotation in two rounds is never rejected", async () => {
    const schema = newSchema();
    const OLD = keyEntry("old");
    const NEW = keyEntry("new");
    const running: ServiceProcess[] = [];
    const restart = async (index: number, keys: string) => {
      const previous = running[index];
      if (previous !== undefined) {
        previous.child.kill("SIGTERM");
        await previous.exited;
      }
      const service = await startServiceProcess({ DATABASE_URL: TEST_DATABASE_URL, DATABASE_SCHEMA: schema, ENCRYPTION_KEYS: keys });
      services.push(service);
      running[index] = service;
    };

    await Promise.all([restart(0, OLD), restart(1, OLD)]);
    await configure(running[0]!, "before", gateway.url("/sms"));
    // Round 1: the new key first, one replica at a time.
    await restart(0, `${NEW},${OLD}`);
    await configure(running[1]!, "round1", gateway.url("/sms"));
    await restart(1, `${NEW},${OLD}`);
    // Round 2: the new key last, so it encrypts the writes.
    await restart(0, `${OLD},${NEW}`);
    await configure(running[0]!, "round2", gateway.url("/sms"));
    expect(await send(running[1]!, "round2")).toMatch(/^gw-/);
    await restart(1, `${OLD},${NEW}`);
    const reencrypted = await reencrypt({ DATABASE_URL: TEST_DATABASE_URL, DATABASE_SCHEMA: schema, ENCRYPTION_KEYS: `${OLD},${NEW}` });
    // The old key removed.
    await restart(0, NEW);
    await restart(1, NEW);

    expect(reencrypted).toEqual({ code: 0, err: "" });
    for (const replica of running) {
      for (const id of ["before", "round1", "round2"]) {
        expect(await send(replica, id)).toMatch(/^gw-/);
      }
    }
    for (const service of services) {
      expect(service.logLines.filter((line) => line.level === ERROR)).toEqual([]);
    }
    const client = new pg.Client({ connectionString: TEST_DATABASE_URL });
    await client.connect();
    const { rows } = await client.query(`select key_id from ${pg.escapeIdentifier(schema)}.encryption_key_checks order by key_id`);
    await client.end();
    expect(rows).toEqual([{ key_id: "new" }, { key_id: "old" }]);
  }, START_MS * 4);
});
