import { once } from "node:events";
import { chmod, copyFile, mkdir, mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { createServer, type AddressInfo, type Server } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";

import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { openStore } from "../../src/store/open-store.js";
import { SQLITE_FILE_NAME } from "../../src/store/sqlite-database.js";
import { runServiceUntilExit } from "../helpers/service-process.js";
import { hasOpenssl, writeTestCertificate, type CertificateFiles } from "../helpers/test-certificate.js";
import { keyEntry } from "../security/security-fixtures.js";
import { silentLogger } from "../store/integration-fixtures.js";
import { SKIP_POSTGRES, TEST_DATABASE_URL } from "../store/postgres-test-database.js";

describe.skipIf(!hasOpenssl())("TLS files", () => {
  let dir: string;
  let served: CertificateFiles;
  let other: CertificateFiles;
  let unreadableKey: string;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "smsgateway-tls-files-"));
    served = writeTestCertificate(dir, "served");
    other = writeTestCertificate(dir, "other");
    unreadableKey = path.join(dir, "unreadable-key.pem");
    await copyFile(served.keyFile, unreadableKey);
    // The service may run as another user, which must reach every file but the unreadable one.
    await chmod(dir, 0o755);
    await Promise.all([served.certFile, served.keyFile, other.certFile, other.keyFile].map((file) => chmod(file, 0o644)));
    await chmod(unreadableKey, 0o000);
  });

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test.each([
    {
      name: "missing certificate as a flag",
      settings: () => ({ args: ["--tls-cert-file", path.join(dir, "missing.pem"), "--tls-key-file", served.keyFile], env: {} }),
      message: /^smsgateway: --tls-cert-file \S+\/missing\.pem cannot be read: not found \(ENOENT\); expected a PEM certificate chain, readable by the user that runs the service\.\n$/,
    },
    {
      name: "missing key as a variable",
      settings: () => ({ args: [], env: { TLS_CERT_FILE: served.certFile, TLS_KEY_FILE: path.join(dir, "missing.pem") } }),
      message: /^smsgateway: TLS_KEY_FILE \S+\/missing\.pem cannot be read: not found \(ENOENT\); expected a PEM private key/,
    },
    {
      name: "key without read permission",
      unprivileged: true,
      settings: () => ({ args: ["--tls-cert-file", served.certFile, "--tls-key-file", unreadableKey], env: {} }),
      message: /^smsgateway: --tls-key-file \S+\/unreadable-key\.pem cannot be read: permission denied \(EACCES\); expected a PEM private key/,
    },
    {
      name: "folder as the certificate",
      settings: () => ({ args: [], env: { TLS_CERT_FILE: dir, TLS_KEY_FILE: served.keyFile } }),
      message: /^smsgateway: TLS_CERT_FILE \S+ cannot be read: it is a folder, not a file \(EISDIR\)/,
    },
    {
      name: "key as the certificate",
      settings: () => ({ args: ["--tls-cert-file", served.keyFile, "--tls-key-file", served.keyFile], env: {} }),
      message: /^smsgateway: --tls-cert-file \S+\/served-key\.pem is not a PEM certificate chain \(.*\); expected the certificate/,
    },
    {
      name: "certificate as the key",
      settings: () => ({ args: ["--tls-cert-file", served.certFile, "--tls-key-file", served.certFile], env: {} }),
      message: /^smsgateway: --tls-key-file \S+\/served-cert\.pem is not a PEM private key \(.*\); expected an unencrypted key/,
    },
    {
      name: "key of another certificate",
      settings: () => ({ args: ["--tls-cert-file", served.certFile], env: { TLS_KEY_FILE: other.keyFile } }),
      message: /^smsgateway: TLS_KEY_FILE \S+\/other-key\.pem is not the private key of the certificate in --tls-cert-file \S+\/served-cert\.pem/,
    },
  ])("$name exits 2 before opening storage", async ({ settings, unprivileged, message }) => {
    const { args, env } = settings();
    const dataDir = path.join(dir, "data");

    const outcome = await runServiceUntilExit(args, { ...env, DATA_DIR: dataDir }, { unprivileged });

    expect(outcome.stderr).toMatch(message);
    expect(outcome.code).toBe(2);
    await expect(stat(dataDir)).rejects.toMatchObject({ code: "ENOENT" });
  });
});

/**
 * Creates a data folder with a migrated SQLite database, as a previous run
 * of the service leaves it, and gives the folder and the file the modes.
 */
async function existingDataFolder(folder: string, folderMode: number, fileMode: number): Promise<void> {
  const opened = await openStore({ dataDir: folder, logger: silentLogger() });
  await opened.store.close();
  await chmod(path.join(folder, SQLITE_FILE_NAME), fileMode);
  await chmod(folder, folderMode);
}

/** Returns the test server's URL with a database that does not exist. */
function missingDatabaseUrl(): string {
  const url = new URL(TEST_DATABASE_URL);
  url.pathname = "/smsgateway_no_such_database";
  return url.toString();
}

describe("storage and port", () => {
  const ENCRYPTION_KEYS = keyEntry("startup");
  let dir: string;
  let readOnly: string;
  let readOnlyWithDatabase: string;
  let readOnlyDatabase: string;
  let lockedDatabase: string;
  let damagedDatabase: string;
  let lock: Database.Database;
  let busy: Server;
  let busyPort: number;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "smsgateway-startup-"));
    readOnly = path.join(dir, "read-only");
    await mkdir(readOnly);
    // The service may run as another user, which must reach the read-only folder but not write it.
    await chmod(dir, 0o755);
    await chmod(readOnly, 0o555);
    // Writable by the user the service runs as, so that only the folder or only the file is read-only.
    readOnlyWithDatabase = path.join(dir, "read-only-with-database");
    await existingDataFolder(readOnlyWithDatabase, 0o555, 0o666);
    readOnlyDatabase = path.join(dir, "read-only-database");
    await existingDataFolder(readOnlyDatabase, 0o777, 0o444);
    // A transaction of another connection keeps the write lock of this database for the whole test.
    lockedDatabase = path.join(dir, "locked-database");
    await existingDataFolder(lockedDatabase, 0o700, 0o600);
    lock = new Database(path.join(lockedDatabase, SQLITE_FILE_NAME));
    lock.exec("begin exclusive");
    damagedDatabase = path.join(dir, "damaged-database");
    await mkdir(damagedDatabase, { mode: 0o700 });
    await writeFile(path.join(damagedDatabase, SQLITE_FILE_NAME), Buffer.alloc(8192, 0x5a), { mode: 0o600 });
    busy = createServer();
    busy.listen(0, "127.0.0.1");
    await once(busy, "listening");
    busyPort = (busy.address() as AddressInfo).port;
  });

  afterAll(async () => {
    busy.close();
    lock.close();
    await rm(dir, { recursive: true, force: true });
  });

  test.each([
    {
      name: "database URL of another database",
      settings: () => ({ args: ["--database-url", "mysql://root:not-for-stderr@db/x"], env: {} }),
      message: /^smsgateway: --database-url: invalid value \(not shown, as it may contain a password\): its scheme is mysql:; expected a postgres:\/\/ or postgresql:\/\/ URL/,
    },
    {
      name: "PostgreSQL that does not listen",
      settings: () => ({ args: [], env: { DATABASE_URL: "postgres://postgres:not-for-stderr@127.0.0.1:1/test", ENCRYPTION_KEYS } }),
      message:
        /^smsgateway: DATABASE_URL postgres:\/\/postgres@127\.0\.0\.1:1\/test: cannot connect to PostgreSQL: connect ECONNREFUSED 127\.0\.0\.1:1 \(ECONNREFUSED\); check that PostgreSQL runs/,
    },
    ...(SKIP_POSTGRES
      ? []
      : [
          {
            name: "PostgreSQL database that does not exist",
            settings: () => ({ args: ["--database-url", missingDatabaseUrl()], env: { ENCRYPTION_KEYS } }),
            message: /^smsgateway: --database-url \S+: cannot connect to PostgreSQL: database "smsgateway_no_such_database" does not exist \(3D000\)/,
          },
        ]),
    {
      name: "data folder in a read-only folder",
      unprivileged: true,
      settings: () => ({ args: ["--data-dir", path.join(readOnly, "data")], env: {} }),
      message: /^smsgateway: --data-dir \S+\/read-only\/data: cannot create the folder: permission denied \(EACCES\); make the folder writable/,
    },
    {
      name: "data folder in a read-only folder with encryption keys",
      unprivileged: true,
      settings: () => ({ args: [], env: { DATA_DIR: path.join(readOnly, "data"), ENCRYPTION_KEYS } }),
      message: /^smsgateway: DATA_DIR \S+\/read-only\/data: cannot create or open the SQLite database \S+: permission denied \(EACCES\); make the folder writable/,
    },
    {
      name: "read-only data folder with encryption keys",
      unprivileged: true,
      settings: () => ({ args: ["--data-dir", readOnly], env: { ENCRYPTION_KEYS } }),
      message: /^smsgateway: --data-dir \S+\/read-only: cannot create or open the SQLite database \S+: SQLite cannot open or create its file there \(SQLITE_CANTOPEN\)/,
    },
    {
      name: "read-only data folder with a database",
      unprivileged: true,
      settings: () => ({ args: [], env: { DATA_DIR: readOnlyWithDatabase, ENCRYPTION_KEYS } }),
      message:
        /^smsgateway: DATA_DIR \S+\/read-only-with-database: cannot create or open the SQLite database \S+\/smsgateway\.db: the folder is read-only, so SQLite cannot create its -wal and -shm files \(SQLITE_READONLY_DIRECTORY\); make the folder writable/,
    },
    {
      name: "read-only database file",
      unprivileged: true,
      settings: () => ({ args: ["--data-dir", readOnlyDatabase], env: { ENCRYPTION_KEYS } }),
      message:
        /^smsgateway: --data-dir \S+\/read-only-database: cannot write the SQLite database \S+\/read-only-database\/smsgateway\.db: the SQLite file is read-only \(SQLITE_READONLY\); make the file, and its -wal and -shm files when they exist, writable by the user that runs the service\.\n$/,
    },
    {
      // The service waits out its busy timeout of 5 s first.
      name: "database locked by another process",
      settings: () => ({ args: [], env: { ENCRYPTION_KEYS, DATA_DIR: lockedDatabase } }),
      message:
        /^smsgateway: DATA_DIR \S+\/locked-database: the SQLite database \S+\/smsgateway\.db is locked by another process \(SQLITE_BUSY\); stop the other process/,
    },
    {
      name: "file that is not a SQLite database",
      settings: () => ({ args: ["--data-dir", damagedDatabase], env: { ENCRYPTION_KEYS } }),
      message:
        /^smsgateway: --data-dir \S+\/damaged-database: the SQLite database \S+\/smsgateway\.db is damaged or is not a SQLite database \(SQLITE_NOTADB\); restore it from a backup/,
    },
    {
      name: "port in use",
      settings: () => ({ args: ["--port", String(busyPort), "--data-dir", path.join(dir, "data")], env: {} }),
      message: /^smsgateway: --port \d+: another process already listens on 127\.0\.0\.1 port \d+ \(EADDRINUSE\); stop it/,
    },
    {
      // No interface of a test machine has this address, and binding it sends nothing.
      name: "address of another machine",
      settings: () => ({ args: [], env: { HOST: "10.255.255.1", API_KEYS: `ci:sms:send:${"a".repeat(64)}`, DATA_DIR: path.join(dir, "data") } }),
      message: /^smsgateway: HOST 10\.255\.255\.1: not an address of this machine \(EADDRNOTAVAIL\)/,
    },
  ])("$name exits 2 naming the setting", async ({ settings, unprivileged, message }) => {
    const { args, env } = settings();

    const outcome = await runServiceUntilExit(args, env, { unprivileged });

    expect(outcome.stderr).toMatch(message);
    expect(outcome.stderr).not.toContain("not-for-stderr");
    expect(outcome.code).toBe(2);
  });
});
