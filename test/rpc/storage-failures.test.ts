import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, test, vi } from "vitest";

import { ErrorInfoSchema } from "../../gen/smsgateway/v1/errors_pb.js";
import { IntegrationService } from "../../gen/smsgateway/v1/integration_service_pb.js";
import { SmsService } from "../../gen/smsgateway/v1/sms_service_pb.js";
import { Delivery } from "../../src/delivery/delivery.js";
import { toConnectError } from "../../src/rpc/error-mapping.js";
import { SQLITE_FILE_NAME } from "../../src/store/sqlite-database.js";
import { StorageError } from "../../src/store/storage-error.js";
import { waitFor } from "../flow/flow-fixtures.js";
import { CLIENT_KINDS, rejection } from "../helpers/clients.js";
import { ScriptedGateway } from "../helpers/scripted-gateway.js";
import { startTestService, type TestService } from "../helpers/service.js";
import { keyEntry } from "../security/security-fixtures.js";
import { FreezableTcpProxy } from "../store/freezable-tcp-proxy.js";
import { dropSchema, SKIP_POSTGRES, TEST_DATABASE_URL, uniqueSchemaName } from "../store/postgres-test-database.js";

const STORAGE_UNAVAILABLE = "the service's storage is unavailable; retry later";

/** The line a batch logs once when some of its key lookups got no result. */
const LOOKUP_SUMMARY = "some lookups of idempotency keys' kept outcomes got no result; their messages went on without them";

/** The integration a call configures: the fields ConfigureIntegration needs. */
const INTEGRATION = { displayName: "storage", baseUrl: "http://127.0.0.1:9/sms", apiKeyHeader: "X-Key", apiKey: "not-for-callers", defaultSender: "Acme" };

/** Starts a proxy to the test database, and returns it with a URL that connects through it, with `password` if given. */
async function proxiedDatabase(password?: string): Promise<{ proxy: FreezableTcpProxy; databaseUrl: string }> {
  const target = new URL(TEST_DATABASE_URL);
  const proxy = await FreezableTcpProxy.start({ host: target.hostname, port: Number(target.port || 5432) });
  const relayed = new URL(TEST_DATABASE_URL);
  relayed.host = `127.0.0.1:${proxy.port}`;
  if (password !== undefined) {
    relayed.password = password;
  }
  return { proxy, databaseUrl: relayed.toString() };
}

/** Returns the reason of an error's ErrorInfo detail, empty when it has none. */
function errorReason(error: ConnectError): string {
  return error.findDetails(ErrorInfoSchema)[0]?.reason ?? "";
}

/** Returns the `rpc failed` log lines of the service. */
function failedCalls(service: TestService): Record<string, unknown>[] {
  return service.logLines.filter((line) => line.msg === "rpc failed");
}

describe.skipIf(SKIP_POSTGRES)("PostgreSQL connection lost during calls", () => {
  let proxy: FreezableTcpProxy;
  let service: TestService;
  const schema = uniqueSchemaName();

  beforeAll(async () => {
    let databaseUrl: string;
    ({ proxy, databaseUrl } = await proxiedDatabase("not-for-callers"));
    service = await startTestService({ databaseUrl, databaseSchema: schema, encryptionKeys: keyEntry("storage") });
    proxy.cut();
  });

  afterAll(async () => {
    await service.stop();
    await proxy.close();
    await dropSchema(schema);
  });

  test.each(CLIENT_KINDS)("$name gets UNAVAILABLE without driver details", async (kind) => {
    const integrations = kind.create(IntegrationService, service.baseUrl);
    try {
      const listed = await rejection(integrations.client.listIntegrations({ pageSize: 10 }));
      const configured = await rejection(integrations.client.configureIntegration({ integration: INTEGRATION }));

      for (const error of [listed, configured]) {
        expect(error.code).toBe(Code.Unavailable);
        expect(error.rawMessage).toBe(STORAGE_UNAVAILABLE);
      }
    } finally {
      integrations.close();
    }
  });

  test("the log keeps the driver's code at warn level", () => {
    const lines = failedCalls(service);
    expect(lines.length).toBeGreaterThan(0);
    for (const line of lines) {
      expect(line).toMatchObject({ level: 40, code: "UNAVAILABLE", err: { type: "StorageError" } });
      const err = line.err as { code?: string; driverMessage: string };
      expect(err.driverMessage).not.toBe("");
      expect(JSON.stringify(line)).not.toContain("not-for-callers");
    }
  });
});

describe.skipIf(SKIP_POSTGRES)("PostgreSQL that goes silent during a keyed send", () => {
  /** SEND_TIMEOUT_MS of the service, which also bounds a key's lookup when the caller sets no deadline. */
  const SEND_TIMEOUT_MS = 1_000;
  let proxy: FreezableTcpProxy;
  let gateway: ScriptedGateway;
  let service: TestService;
  let sms: Client<typeof SmsService>;
  let integrations: Client<typeof IntegrationService>;
  const schema = uniqueSchemaName();

  beforeAll(async () => {
    let databaseUrl: string;
    ({ proxy, databaseUrl } = await proxiedDatabase());
    gateway = await ScriptedGateway.start();
    gateway.on("/sms", { status: 500 });
    // One failure opens the circuit, and a keyed send through an open circuit looks up its key's outcome first.
    service = await startTestService({
      databaseUrl,
      databaseSchema: schema,
      encryptionKeys: keyEntry("storage"),
      circuitFailureThreshold: 1,
      circuitOpenMs: 60_000,
      sendTimeoutMs: SEND_TIMEOUT_MS,
    });
    const transport = createConnectTransport({ baseUrl: service.baseUrl, httpVersion: "1.1" });
    integrations = createClient(IntegrationService, transport);
    sms = createClient(SmsService, transport);
    // Until the change listener is up, integrations are read from the database, which a freeze would hold too.
    await waitFor(() => service.logLines.some((line) => String(line.msg).startsWith("listening for integration changes")), "the change listener");
  });

  afterAll(async () => {
    vi.restoreAllMocks();
    await service.stop();
    await gateway.close();
    await proxy.close();
    await dropSchema(schema);
  });

  /** Stores an integration whose gateway fails, opens its circuit, and leaves it in the cache. */
  async function openCircuit(id: string): Promise<void> {
    await integrations.configureIntegration({ integration: { ...INTEGRATION, id, baseUrl: gateway.url("/sms") }, allowMissing: true });
    await rejection(sms.sendSms({ integrationId: id, to: "+15550001", content: "opens the circuit" }));
    // The change notification of the configure call empties the integration's cache entry when it arrives,
    // so this rejected send, which reads the integration again, leaves it in the cache for the keyed send.
    const opened = () => service.logLines.some((line) => line.integrationId === id && String(line.msg).startsWith("circuit opened"));
    await waitFor(opened, "the circuit to open");
    expect((await rejection(sms.sendSms({ integrationId: id, to: "+15550001", content: "reads the integration" }))).code).toBe(Code.Unavailable);
  }

  /** Returns the batch's one line about lookups without a result, for this request id. */
  function problemLines(requestId: string): Record<string, unknown>[] {
    return service.logLines.filter((line) => line.requestId === requestId && line.msg === LOOKUP_SUMMARY);
  }

  /** Returns whether the pipeline logged the end of the call with this request id. */
  function ended(requestId: string): boolean {
    return service.logLines.some((line) => line.requestId === requestId && typeof line.code === "string");
  }

  test("the key's lookup ends at the caller's deadline", async () => {
    await openCircuit("frozen");

    proxy.freeze();
    try {
      const error = await rejection(
        sms.sendSms(
          { integrationId: "frozen", to: "+15550001", content: "hello", idempotencyKey: "frozen-key" },
          { timeoutMs: 300, headers: { "x-request-id": "frozen-1" } },
        ),
      );

      expect(error.code).toBe(Code.DeadlineExceeded);
      // The call's log line comes while the database is still silent.
      await waitFor(() => ended("frozen-1"), "the call to end while the database is frozen", 5_000);
      const lookupLines = service.logLines.filter((line) => line.requestId === "frozen-1" && String(line.msg).includes("kept outcome"));
      expect(lookupLines).toEqual([expect.objectContaining({ level: 40, msg: expect.stringMatching(/took longer than the call allows/) })]);
    } finally {
      proxy.release();
    }
  });

  test("without a deadline the lookup ends at SEND_TIMEOUT_MS", async () => {
    await openCircuit("frozen-no-deadline");

    proxy.freeze();
    try {
      const error = await rejection(
        sms.sendSms(
          { integrationId: "frozen-no-deadline", to: "+15550001", content: "hello", idempotencyKey: "frozen-key-2" },
          { headers: { "x-request-id": "frozen-2" } },
        ),
      );

      expect(errorReason(error)).toBe("CIRCUIT_OPEN");
      expect(ended("frozen-2")).toBe(true);
    } finally {
      proxy.release();
    }
  });

  test("a batch's lookups keep its response reserve", async () => {
    await openCircuit("frozen-batch");
    const lookups = vi.spyOn(Delivery.prototype, "storedOutcome");
    const messages = Array.from({ length: 200 }, (_, index) => ({ to: "+15550001", content: `m${index}`, idempotencyKey: `frozen-batch-${index}` }));

    proxy.freeze();
    try {
      // The deadline goes in the header alone, because the client shares this process. On a busy machine, the
      // client's own timer could end the call while it still reads a response that the service sent in time.
      const response = await sms.sendSmsBatch({ integrationId: "frozen-batch", messages }, { headers: { "connect-timeout-ms": "1000", "x-request-id": "frozen-3" } });

      expect(response.results).toHaveLength(200);
      // The messages in flight (BATCH_CONCURRENCY, 16) each looked up their key until the batch's own end, and no
      // lookup of a message the open circuit rejected started after it.
      expect(lookups.mock.calls.length).toBeLessThanOrEqual(16);
      expect(problemLines("frozen-3")).toEqual([expect.objectContaining({ level: 40, timedOut: expect.any(Number), notStarted: expect.any(Number) })]);
    } finally {
      lookups.mockRestore();
      proxy.release();
    }
  });

  test("a message that waited for a slot keeps the batch's response time", async () => {
    gateway.on("/slow-failure", async () => {
      await sleep(1_200);
      return { status: 500 };
    });
    await integrations.configureIntegration({ integration: { ...INTEGRATION, id: "frozen-slot", baseUrl: gateway.url("/slow-failure"), maxConcurrentSends: 1 }, allowMissing: true });
    const holder = rejection(sms.sendSms({ integrationId: "frozen-slot", to: "+15550001", content: "holds the only slot" }));
    await waitFor(() => gateway.requestsTo("/slow-failure").length === 1, "the slot to be taken");
    // Reads the integration into the cache, in case the configure call's notification emptied it after the send read it.
    await integrations.getIntegration({ id: "frozen-slot" });

    proxy.freeze();
    try {
      // The message waits for the slot; the holder's failure then opens the circuit, and the lookup of its key hangs.
      const batch = sms.sendSmsBatch(
        { integrationId: "frozen-slot", messages: [{ to: "+15550002", content: "waits for the slot", idempotencyKey: "frozen-slot-1" }] },
        // The holder's send ends at SEND_TIMEOUT_MS (1 s), so the lookup starts with less than that left of this deadline.
        { timeoutMs: 1_600 },
      );
      await holder;

      const response = await batch;

      expect(response.results).toHaveLength(1);
      expect(response.failedCount).toBe(1);
    } finally {
      proxy.release();
    }
  });

  test("a batch without a deadline logs its lookups once", async () => {
    await openCircuit("frozen-batch-2");
    const messages = Array.from({ length: 100 }, (_, index) => ({ to: "+15550001", content: `m${index}`, idempotencyKey: `frozen-batch-2-${index}` }));

    proxy.freeze();
    try {
      const response = await sms.sendSmsBatch({ integrationId: "frozen-batch-2", messages }, { headers: { "x-request-id": "frozen-4" } });

      expect(response.failedCount).toBe(100);
      const warnings = service.logLines.filter((line) => line.requestId === "frozen-4" && Number(line.level) >= 40);
      expect(warnings.map((line) => line.msg)).toEqual([LOOKUP_SUMMARY]);
    } finally {
      proxy.release();
    }
  });

  test("a caller's cancel during a lookup is logged at info", async () => {
    await openCircuit("frozen-cancel");
    const controller = new AbortController();

    proxy.freeze();
    try {
      const call = sms.sendSms(
        { integrationId: "frozen-cancel", to: "+15550001", content: "hello", idempotencyKey: "frozen-cancel-key" },
        { signal: controller.signal, headers: { "x-request-id": "frozen-5" } },
      );
      setTimeout(() => controller.abort(), 100);

      expect((await rejection(call)).code).toBe(Code.Canceled);
      await waitFor(() => ended("frozen-5"), "the call to end");
      const lookupLines = service.logLines.filter((line) => line.requestId === "frozen-5" && String(line.msg).includes("kept outcome"));
      expect(lookupLines).toEqual([expect.objectContaining({ level: 30, msg: "the call was canceled while the kept outcome of its idempotency key was looked up" })]);
    } finally {
      proxy.release();
    }
  });
});

describe("SQLite that fails every key lookup", () => {
  let gateway: ScriptedGateway;
  let service: TestService;

  beforeAll(async () => {
    gateway = await ScriptedGateway.start();
    gateway.on("/sms", { status: 500 });
    service = await startTestService({ circuitFailureThreshold: 1, circuitOpenMs: 60_000 });
  });

  afterAll(async () => {
    await service.stop();
    await gateway.close();
  });

  test("a batch logs the failed lookups once", async () => {
    const transport = createConnectTransport({ baseUrl: service.baseUrl, httpVersion: "1.1" });
    const integrations = createClient(IntegrationService, transport);
    const sms = createClient(SmsService, transport);
    await integrations.configureIntegration({ integration: { ...INTEGRATION, id: "no-keys", baseUrl: gateway.url("/sms") }, allowMissing: true });
    await rejection(sms.sendSms({ integrationId: "no-keys", to: "+15550001", content: "opens the circuit" }));
    const file = new Database(`${service.dataDir}/${SQLITE_FILE_NAME}`);
    file.exec("DROP TABLE idempotency_keys");
    file.close();
    const messages = Array.from({ length: 100 }, (_, index) => ({ to: "+15550001", content: `m${index}`, idempotencyKey: `no-keys-${index}` }));

    const response = await sms.sendSmsBatch({ integrationId: "no-keys", messages }, { headers: { "x-request-id": "no-keys-1" } });

    expect(response.failedCount).toBe(100);
    const warnings = service.logLines.filter((line) => line.requestId === "no-keys-1" && Number(line.level) >= 40);
    expect(warnings).toEqual([expect.objectContaining({ msg: LOOKUP_SUMMARY, failed: 100, err: expect.objectContaining({ type: "StorageError" }) })]);
  });
});

describe("SQLite file locked by another process", () => {
  let service: TestService;
  let locker: Database.Database;

  beforeAll(async () => {
    service = await startTestService();
    locker = new Database(`${service.dataDir}/${SQLITE_FILE_NAME}`);
    locker.exec("BEGIN EXCLUSIVE");
  });

  afterAll(async () => {
    locker.exec("ROLLBACK");
    locker.close();
    await service.stop();
  });

  test("a write gets UNAVAILABLE once the busy timeout has passed", async () => {
    const [kind] = CLIENT_KINDS;
    const integrations = kind!.create(IntegrationService, service.baseUrl);

    const error = await rejection(integrations.client.configureIntegration({ integration: INTEGRATION }));

    expect(error.code).toBe(Code.Unavailable);
    expect(error.rawMessage).toBe(STORAGE_UNAVAILABLE);
    expect(failedCalls(service).at(-1)).toMatchObject({ level: 40, err: { type: "StorageError", code: "SQLITE_BUSY" } });
  });
});

describe("statements the database refuses", () => {
  test("a constraint violation is a bug of the service: INTERNAL", () => {
    const database = new Database(":memory:");
    database.exec("CREATE TABLE t (id TEXT PRIMARY KEY); INSERT INTO t VALUES ('a')");
    let driverError: unknown;
    try {
      database.exec("INSERT INTO t VALUES ('a')");
    } catch (error) {
      driverError = error;
    }
    database.close();

    const storage = new StorageError("create", driverError);
    const mapped = toConnectError(storage);

    expect(storage.code).toBe("SQLITE_CONSTRAINT_PRIMARYKEY");
    expect(mapped.code).toBe(Code.Internal);
    expect(mapped.cause).toBe(storage);
  });

  test("dropped table gets UNAVAILABLE", () => {
    const database = new Database(":memory:");
    let driverError: unknown;
    try {
      database.prepare("SELECT * FROM integrations").all();
    } catch (error) {
      driverError = error;
    }
    database.close();

    const storage = new StorageError("get", driverError);

    expect(storage.code).toBe("SQLITE_ERROR");
    expect(storage.statementRejected).toBe(false);
    expect(toConnectError(storage).code).toBe(Code.Unavailable);
  });

  test.each([
    { code: "SQLITE_BUSY", rejected: false },
    { code: "SQLITE_READONLY_DIRECTORY", rejected: false },
    { code: "SQLITE_IOERR_WRITE", rejected: false },
    { code: "SQLITE_FULL", rejected: false },
    { code: "SQLITE_CONSTRAINT_UNIQUE", rejected: true },
    { code: "SQLITE_ERROR", rejected: true },
    { code: "ECONNRESET", rejected: false },
    { code: "ETIMEDOUT", rejected: false },
    { code: "57P01", rejected: false },
    { code: "08006", rejected: false },
    { code: "53300", rejected: false },
    { code: "42501", rejected: false },
    { code: "42P01", rejected: false },
    { code: "23505", rejected: true },
    { code: "22021", rejected: true },
    { code: "42601", rejected: true },
    { code: undefined, rejected: false },
  ])("driver code $code: statement rejected $rejected", ({ code, rejected }) => {
    const driverError = Object.assign(new Error("driver message"), code === undefined ? {} : { code });

    const storage = new StorageError("get", driverError);

    expect(storage.statementRejected).toBe(rejected);
    expect(toConnectError(storage).code).toBe(rejected ? Code.Internal : Code.Unavailable);
  });
});

describe("a damaged database", () => {
  test("a file that is not a database gets DATA_LOSS", () => {
    const directory = mkdtempSync(path.join(tmpdir(), "smsgateway-damaged-"));
    const file = path.join(directory, SQLITE_FILE_NAME);
    writeFileSync(file, Buffer.alloc(8192, 0x5a));
    let driverError: unknown;
    try {
      const database = new Database(file);
      try {
        database.prepare("SELECT * FROM sqlite_master").all();
      } finally {
        database.close();
      }
    } catch (error) {
      driverError = error;
    } finally {
      rmSync(directory, { recursive: true, force: true });
    }

    const storage = new StorageError("get", driverError);
    const mapped = toConnectError(storage);

    expect(storage.code).toBe("SQLITE_NOTADB");
    expect(mapped.code).toBe(Code.DataLoss);
    expect(mapped.rawMessage).toContain("restore");
    expect(mapped.cause).toBe(storage);
  });

  test.each(["SQLITE_CORRUPT", "SQLITE_CORRUPT_INDEX", "SQLITE_NOTADB", "XX001", "XX002"])("driver code %s gets DATA_LOSS", (code) => {
    const storage = new StorageError("get", Object.assign(new Error("driver message"), { code }));

    expect(storage.dataCorrupted).toBe(true);
    expect(storage.statementRejected).toBe(false);
    expect(toConnectError(storage).code).toBe(Code.DataLoss);
  });

  test.each(["SQLITE_BUSY", "SQLITE_CONSTRAINT_UNIQUE", "XX000", "57P01"])("driver code %s is not damage", (code) => {
    const storage = new StorageError("get", Object.assign(new Error("driver message"), { code }));

    expect(storage.dataCorrupted).toBe(false);
  });
});
