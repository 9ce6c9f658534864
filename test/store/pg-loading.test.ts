import { randomBytes } from "node:crypto";
import path from "node:path";
import { afterEach, describe, expect, test } from "vitest";
import { closedLoopbackUrl } from "../helpers/scripted-gateway.js";
import { runServiceUntilExit, startServiceProcess, type ServiceProcess } from "../helpers/service-process.js";
import { dropSchema, SKIP_POSTGRES, TEST_DATABASE_URL, uniqueSchemaName } from "./postgres-test-database.js";

/** Makes the service print how many files of pg and its packages it loaded, on SIGUSR2 and at exit. */
const PROBE_OPTIONS = `--import=${path.resolve("test/store/pg-files-probe.mjs")}`;

const services: ServiceProcess[] = [];
const schemas: string[] = [];

afterEach(async () => {
  for (const service of services.splice(0)) {
    await service.stop();
  }
  for (const schema of schemas.splice(0)) {
    await dropSchema(schema);
  }
});

/** Returns the number of driver files that a running service has loaded, which it prints on SIGUSR2. */
async function driverFilesOf(service: ServiceProcess): Promise<unknown> {
  service.child.kill("SIGUSR2");
  const line = await service.waitForLog((entry) => "pgDriverFiles" in entry, 10_000);
  return line.pgDriverFiles;
}

/** A key for the encryption of stored secrets, which a PostgreSQL store requires. */
const encryptionKeys = () => `probe:${randomBytes(32).toString("base64")}`;

describe("the PostgreSQL driver", () => {
  test("is not loaded by the service on SQLite", async () => {
    const service = await startServiceProcess({ NODE_OPTIONS: PROBE_OPTIONS });
    services.push(service);

    expect(await driverFilesOf(service)).toBe(0);
  }, 30_000);

  // The two tests below show that the probe detects the driver once it is loaded.
  test("is loaded when a PostgreSQL URL is set", async () => {
    const { port } = new URL(await closedLoopbackUrl());
    const env = { DATABASE_URL: `postgres://postgres@127.0.0.1:${port}/test`, ENCRYPTION_KEYS: encryptionKeys(), NODE_OPTIONS: PROBE_OPTIONS };

    const outcome = await runServiceUntilExit([], env);

    expect(outcome.code).not.toBe(0);
    const reports = outcome.stdout.split("\n").filter((text) => text.includes('"pgDriverFiles"'));
    expect(reports).toHaveLength(1);
    expect((JSON.parse(reports[0]!) as { pgDriverFiles: number }).pgDriverFiles).toBeGreaterThan(0);
  }, 30_000);

  test.skipIf(SKIP_POSTGRES)("is loaded by the service on PostgreSQL", async () => {
    const schema = uniqueSchemaName();
    schemas.push(schema);
    const service = await startServiceProcess({
      DATABASE_URL: TEST_DATABASE_URL,
      DATABASE_SCHEMA: schema,
      ENCRYPTION_KEYS: encryptionKeys(),
      NODE_OPTIONS: PROBE_OPTIONS,
    });
    services.push(service);

    expect(await driverFilesOf(service)).toBeGreaterThan(0);
  }, 30_000);
});
