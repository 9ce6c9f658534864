import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";

import { afterEach, beforeEach, expect, test } from "vitest";

import { LOCK_FILE_NAME, lockDataDir } from "../../src/store/data-dir-lock.js";
import { openStore } from "../../src/store/open-store.js";
import { StorageError } from "../../src/store/storage-error.js";
import { silentLogger } from "./integration-fixtures.js";

let dataDir: string;

beforeEach(async () => {
  dataDir = await mkdtemp(path.join(tmpdir(), "smsgateway-dir-lock-"));
});

afterEach(async () => {
  await rm(dataDir, { recursive: true, force: true });
});

test("second lock fails with SQLITE_BUSY", () => {
  const first = lockDataDir(dataDir);
  try {
    let failure: unknown;
    try {
      lockDataDir(dataDir).release();
    } catch (error) {
      failure = error;
    }

    expect(failure).toBeInstanceOf(StorageError);
    expect((failure as StorageError).operation).toBe("lock");
    expect((failure as StorageError).code).toBe("SQLITE_BUSY");
  } finally {
    first.release();
  }
});

test("release lets the next lock in", async () => {
  const first = lockDataDir(dataDir);
  first.release();
  first.release();

  const second = lockDataDir(dataDir);
  second.release();

  expect((await stat(path.join(dataDir, LOCK_FILE_NAME))).size).toBe(0);
});

test("store with lockDataDir holds the lock until closed", async () => {
  const locked = await openStore({ dataDir, lockDataDir: true, logger: silentLogger() });

  await expect(openStore({ dataDir, lockDataDir: true, logger: silentLogger() })).rejects.toMatchObject({
    operation: "lock",
    code: "SQLITE_BUSY",
  });
  const unlocked = await openStore({ dataDir, logger: silentLogger() });
  await unlocked.store.close();
  await locked.store.close();

  const next = await openStore({ dataDir, lockDataDir: true, logger: silentLogger() });
  await next.store.close();
});

test("lock file is owner-only", async () => {
  const previous = process.umask(0o022);
  try {
    lockDataDir(dataDir).release();
  } finally {
    process.umask(previous);
  }

  expect((await stat(path.join(dataDir, LOCK_FILE_NAME))).mode & 0o777).toBe(0o600);
});
