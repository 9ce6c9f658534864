import { existsSync } from "node:fs";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { Writable } from "node:stream";

import { afterEach, beforeEach, describe, expect, test } from "vitest";

import { ConfigError } from "../../src/config/load-config.js";
import { EncryptingIntegrationStore } from "../../src/security/encrypting-integration-store.js";
import { runReencryptCommand } from "../../src/security/reencrypt-command.js";
import { LOCK_FILE_NAME } from "../../src/store/data-dir-lock.js";
import { openStore } from "../../src/store/open-store.js";
import { SQLITE_FILE_NAME } from "../../src/store/sqlite-database.js";
import { runServiceUntilExit, startServiceProcess, type ServiceProcess } from "../helpers/service-process.js";
import { startTestService } from "../helpers/service.js";
import { cipherOf, keyEntry } from "../security/security-fixtures.js";
import { sampleFields, silentLogger } from "../store/integration-fixtures.js";


/** Returns the start-up error of a service whose DATA_DIR is in use by another process. */
function inUseBySomeone(setting: string, dataDir: string): string {
  return (
    `smsgateway: ${setting} ${dataDir}: the data folder is in use by another service process, which has the lock on ` +
    `${path.join(dataDir, LOCK_FILE_NAME)}. Stop that process, set ${setting} to another folder, or set ` +
    "DATABASE_URL to store the data in PostgreSQL, which several service processes can share.\n"
  );
}

/** Returns whether the service's liveness probe returns a 2xx status. */
async function isAlive(service: ServiceProcess): Promise<boolean> {
  const response = await fetch(`${service.baseUrl}/healthz`);
  return response.ok;
}

describe("one service process per DATA_DIR", () => {
  const started: ServiceProcess[] = [];
  let dataDir: string;

  beforeEach(async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), "smsgateway-lock-"));
  });

  afterEach(async () => {
    await Promise.all(started.splice(0).map((service) => service.stop()));
    await rm(dataDir, { recursive: true, force: true });
  });

  async function startOn(folder: string): Promise<ServiceProcess> {
    const service = await startServiceProcess({ DATA_DIR: folder });
    started.push(service);
    return service;
  }

  test("second service exits 2 naming DATA_DIR", async () => {
    const first = await startOn(dataDir);

    const second = await runServiceUntilExit([], { DATA_DIR: dataDir });

    expect(second.stderr).toBe(inUseBySomeone("DATA_DIR", dataDir));
    expect(second.code).toBe(2);
    expect(second.stdout).toContain('"msg":"failed to start"');
    expect(await isAlive(first)).toBe(true);
  });

  test("second service names the --data-dir flag", async () => {
    await startOn(dataDir);

    const second = await runServiceUntilExit(["--data-dir", dataDir], {});

    expect(second.stderr).toBe(inUseBySomeone("--data-dir", dataDir));
    expect(second.code).toBe(2);
  });

  test("killed service leaves no stale lock", async () => {
    const first = await startOn(dataDir);
    first.child.kill("SIGKILL");
    const exit = await first.exited;
    expect(exit.signal).toBe("SIGKILL");
    expect(existsSync(path.join(dataDir, LOCK_FILE_NAME))).toBe(true);

    const next = await startOn(dataDir);

    expect(await isAlive(next)).toBe(true);
  });

  test("stopped service releases the lock", async () => {
    const first = await startOn(dataDir);
    first.child.kill("SIGTERM");
    expect(await first.exited).toEqual({ code: 0, signal: null });

    const next = await startOn(dataDir);

    expect(await isAlive(next)).toBe(true);
  });

  test("reencrypt runs beside a service and the service keeps the folder", async () => {
    const oldKey = keyEntry("old");
    const keys = `${oldKey},${keyEntry("new")}`;
    const seeded = new EncryptingIntegrationStore((await openStore({ dataDir, logger: silentLogger() })).store, cipherOf(oldKey));
    await seeded.create(sampleFields(), "one");
    await seeded.close();
    const service = await startServiceProcess({ DATA_DIR: dataDir, ENCRYPTION_KEYS: keys });
    started.push(service);
    const out: string[] = [];

    const code = await runReencryptCommand([], { DATA_DIR: dataDir, ENCRYPTION_KEYS: keys }, {
      out: (line) => out.push(line),
      err: (line) => out.push(line),
      logs: new Writable({ write: (_chunk, _encoding, callback) => callback() }),
    });
    const second = await runServiceUntilExit([], { DATA_DIR: dataDir, ENCRYPTION_KEYS: keys });

    expect(code).toBe(0);
    expect(out.join("\n")).toMatch(/^re-encrypted 1 of 1 integrations under key new/);
    expect(await isAlive(service)).toBe(true);
    expect(second.stderr).toBe(inUseBySomeone("DATA_DIR", dataDir));
    expect(second.code).toBe(2);
  });

  test("read-only lock file exits 2", async () => {
    // Writable by the user the service runs as, so that only the lock file is read-only.
    const opened = await openStore({ dataDir, logger: silentLogger() });
    await opened.store.close();
    await chmod(path.join(dataDir, SQLITE_FILE_NAME), 0o666);
    await writeFile(path.join(dataDir, LOCK_FILE_NAME), "", { mode: 0o444 });
    await chmod(path.join(dataDir, LOCK_FILE_NAME), 0o444);
    await chmod(dataDir, 0o777);

    const outcome = await runServiceUntilExit([], { DATA_DIR: dataDir, ENCRYPTION_KEYS: keyEntry("lock") }, { unprivileged: true });

    expect(outcome.stderr).toMatch(
      /^smsgateway: DATA_DIR \S+: cannot take the lock file \S+\/smsgateway\.lock: attempt to write a readonly database \(SQLITE_READONLY\); make it writable/,
    );
    expect(outcome.code).toBe(2);
  });
});

describe("one service per DATA_DIR in one process", () => {
  test("second start is a ConfigError", async () => {
    const first = await startTestService();
    try {
      const second = startTestService({ dataDir: first.dataDir });

      await expect(second).rejects.toBeInstanceOf(ConfigError);
      await expect(second).rejects.toThrow(/the data folder is in use by another service process/);
    } finally {
      await first.stop();
    }
  });
});
