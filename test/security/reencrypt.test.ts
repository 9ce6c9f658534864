import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Writable } from "node:stream";
import { promisify } from "node:util";

import pg from "pg";
import { afterEach, beforeAll, beforeEach, describe, expect, test } from "vitest";

import { runReencryptCommand } from "../../src/security/reencrypt-command.js";
import { reencryptSecrets, type ReencryptableStore } from "../../src/security/reencrypt-secrets.js";
import { EncryptingIntegrationStore } from "../../src/security/encrypting-integration-store.js";
import { checkStoredEncryptionKeys } from "../../src/security/encryption-key-check.js";
import { describePostgresUrl } from "../../src/store/postgres-database.js";
import { sampleFields, silentLogger } from "../store/integration-fixtures.js";
import { assertPostgresReachable, dropSchema, SKIP_POSTGRES, TEST_DATABASE_URL, uniqueSchemaName } from "../store/postgres-test-database.js";
import { cipherOf, keyEntry, ring } from "./security-fixtures.js";
import { STORE_ENGINES, type EngineLocation } from "./store-engines.js";

const run = promisify(execFile);
const TSX = path.resolve("node_modules/.bin/tsx");

/** Returns whether the test database has a schema of this name. */
async function schemaExists(schema: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: TEST_DATABASE_URL, connectionTimeoutMillis: 5_000 });
  await client.connect();
  try {
    const { rows } = await client.query("select 1 from pg_catalog.pg_namespace where nspname = $1", [schema]);
    return rows.length > 0;
  } finally {
    await client.end();
  }
}

const OLD = keyEntry("old");
const NEW = keyEntry("new");

/** Runs the command in this process and returns its exit code and output. */
async function reencrypt(
  location: EngineLocation,
  keys: string,
  extraEnv: Record<string, string> = {},
): Promise<{ code: number; out: string; err: string; logs: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      logs.push(chunk.toString("utf8"));
      callback();
    },
  });
  const env = { ...location.command.env, ENCRYPTION_KEYS: keys, LOG_LEVEL: "info", ...extraEnv };
  const code = await runReencryptCommand([], env, { out: (line) => out.push(line), err: (line) => err.push(line), logs: sink });
  return { code, out: out.join("\n"), err: err.join("\n"), logs: logs.join("") };
}

describe.each(STORE_ENGINES)("$name", (engine) => {
  describe.skipIf(engine.skip)("re-encrypt command", () => {
    let location: EngineLocation;

    beforeAll(async () => {
      if (engine.name === "PostgreSQL") {
        await assertPostgresReachable();
      }
    });

    beforeEach(async () => {
      location = await engine.open();
    });

    afterEach(async () => {
      await location.dispose();
    });

    /** Writes rows under the old key, one legacy plain-text row, and returns the plain texts by id. */
    async function seed(): Promise<Map<string, { apiKey: string; secretKey: string }>> {
      const plain = await location.openPlain();
      const store = new EncryptingIntegrationStore(plain, cipherOf(OLD));
      const expected = new Map<string, { apiKey: string; secretKey: string }>();
      try {
        for (const id of ["a", "b"]) {
          const secrets = { apiKey: `api-${id}-0123456789`, secretKey: `secret-${id}-0123456789` };
          await store.create(sampleFields(secrets), id);
          expected.set(id, secrets);
        }
        await store.create(sampleFields({ apiKey: "api-c-0123456789", secretKeyHeader: "", secretKey: "" }), "c");
        expected.set("c", { apiKey: "api-c-0123456789", secretKey: "" });
        await plain.create(sampleFields({ apiKey: "legacy-api-0123", secretKey: "legacy-secret-0123" }), "legacy");
        expected.set("legacy", { apiKey: "legacy-api-0123", secretKey: "legacy-secret-0123" });
      } finally {
        await store.close();
      }
      return expected;
    }

    test("a store without integrations fails", async () => {
      // Opening and closing the store creates it, empty, as a service started with a mistyped DATABASE_SCHEMA leaves it.
      await (await location.openPlain()).close();

      const result = await reencrypt(location, `${OLD},${NEW}`);

      expect(result.code).toBe(1);
      expect(result.out).toMatch(/^re-encrypted 0 of 0 integrations/);
      expect(result.err).toMatch(/^reencrypt: found no integrations in .*; if the service has some, check .*, and keep the old key$/);
    });

    test("rotates every secret to the newest key", async () => {
      const expected = await seed();
      const before = await location.rawRow("a");

      const first = await reencrypt(location, `${OLD},${NEW}`);

      expect(first.err).toBe("");
      expect(first.code).toBe(0);
      expect(first.out).toMatch(/^re-encrypted 4 of 4 integrations under key new .*\(0 already current, 0 failed\)$/);
      for (const id of expected.keys()) {
        const row = await location.rawRow(id);
        expect(row?.api_key).toMatch(/^v1:new:/);
        expect(row?.secret_key === "" || String(row?.secret_key).startsWith("v1:new:")).toBe(true);
      }
      const after = await location.rawRow("a");
      expect(after?.version).toBe(before?.version);
      expect(after?.update_time).toBe(before?.update_time);
      expect(first.logs).not.toContain("0123456789");

      const newOnly = new EncryptingIntegrationStore(await location.openPlain(), cipherOf(NEW));
      try {
        for (const [id, secrets] of expected) {
          const read = await newOnly.get(id);
          expect(read).toMatchObject(secrets);
          expect(read?.unreadableSecrets).toBeUndefined();
        }
      } finally {
        await newOnly.close();
      }
    });

    test("second run changes nothing", async () => {
      await seed();
      await reencrypt(location, `${OLD},${NEW}`);
      const rowBefore = await location.rawRow("b");

      const second = await reencrypt(location, `${OLD},${NEW}`);

      expect(second.code).toBe(0);
      expect(second.out).toMatch(/^re-encrypted 0 of 4 integrations under key new .*\(4 already current, 0 failed\)$/);
      expect(await location.rawRow("b")).toEqual(rowBefore);
    });

    test("legacy plain text gets encrypted", async () => {
      const plain = await location.openPlain();
      await plain.create(sampleFields({ apiKey: "legacy-api-0123", secretKey: "legacy-secret-0123" }), "legacy");
      await plain.close();

      const result = await reencrypt(location, OLD);

      expect(result.code).toBe(0);
      const row = await location.rawRow("legacy");
      expect(row?.api_key).toMatch(/^v1:old:/);
      expect(JSON.stringify(row)).not.toContain("legacy-api-0123");
      expect(JSON.stringify(row)).not.toContain("legacy-secret-0123");
    });

    test("unknown key is reported and the rest is rewritten", async () => {
      await seed();
      const lost = new EncryptingIntegrationStore(await location.openPlain(), cipherOf(keyEntry("lost")));
      await lost.create(sampleFields(), "orphan");
      await lost.close();

      const result = await reencrypt(location, `${OLD},${NEW}`);

      expect(result.code).toBe(1);
      expect(result.out).toMatch(/^re-encrypted 4 of 5 integrations .*\(0 already current, 1 failed\)$/);
      expect(result.err).toContain('integration orphan: stored api_key of integration "orphan" cannot be decrypted');
      expect(result.err).toContain("key id lost");
      expect((await location.rawRow("orphan"))?.api_key).toMatch(/^v1:lost:/);
      expect((await location.rawRow("a"))?.api_key).toMatch(/^v1:new:/);
    });

    test("a concurrent update is kept, then re-encrypted", async () => {
      const plain = await location.openPlain();
      const service = new EncryptingIntegrationStore(await location.openPlain(), cipherOf(OLD));
      await service.create(sampleFields({ apiKey: "before-0123456789" }), "busy");
      let raced = false;
      // The service updates the row after the command read it and before the command writes it.
      const racing: ReencryptableStore = {
        list: (options) => plain.list(options),
        get: (id) => plain.get(id),
        replaceSecrets: async (...args) => {
          if (!raced) {
            raced = true;
            await service.update("busy", sampleFields({ apiKey: "during-0123456789" }));
          }
          return plain.replaceSecrets(...args);
        },
      };

      try {
        const result = await reencryptSecrets(racing, cipherOf(OLD, NEW), silentLogger());

        expect(raced).toBe(true);
        expect(result).toMatchObject({ examined: 1, reencrypted: 1, failures: [] });
        const newOnly = new EncryptingIntegrationStore(await location.openPlain(), cipherOf(NEW));
        expect((await newOnly.get("busy"))?.apiKey).toBe("during-0123456789");
        await newOnly.close();
      } finally {
        await service.close();
        await plain.close();
      }
    });

    test("a mistyped key exits 2 before rewriting", async () => {
      const expected = await seed();
      const { store, keyChecks } = await location.openStore();
      await checkStoredEncryptionKeys(keyChecks, { ring: ring(OLD), source: "ENCRYPTION_KEYS", setting: "ENCRYPTION_KEYS" }, location.description, silentLogger());
      await store.close();
      const rows = await Promise.all([...expected.keys()].map((id) => location.rawRow(id)));

      const result = await reencrypt(location, `${keyEntry("old")},${NEW}`);

      expect(result.code).toBe(2);
      expect(result.err).toMatch(/^reencrypt: key id "old" in ENCRYPTION_KEYS is not the key that was first used under this id in /);
      expect(result.out).toBe("");
      expect(await Promise.all([...expected.keys()].map((id) => location.rawRow(id)))).toEqual(rows);
      expect((await location.rawKeyChecks()).map((row) => row.key_id)).toEqual(["old"]);
    });

    test("a key that does not decrypt the stored secrets exits 2", async () => {
      // Secrets written before the key checks existed: the key is tried on them.
      const expected = await seed();
      const rows = await Promise.all([...expected.keys()].map((id) => location.rawRow(id)));

      const result = await reencrypt(location, `${keyEntry("old")},${NEW}`);

      expect(result.code).toBe(2);
      expect(result.err).toMatch(/^reencrypt: key id "old" in ENCRYPTION_KEYS is not the key .*: it does not decrypt the secrets stored under "old" \(integrations a, b, c\)/);
      expect(await Promise.all([...expected.keys()].map((id) => location.rawRow(id)))).toEqual(rows);
      expect(await location.rawKeyChecks()).toEqual([]);
    });

    test("invalid keys are a configuration error", async () => {
      await seed();

      const result = await reencrypt(location, "new:dG9vLXNob3J0");

      expect(result.code).toBe(2);
      expect(result.err).toMatch(/^reencrypt: ENCRYPTION_KEYS: entry 1 \(key id "new"\): the key must be 32 bytes/);
    });
  });
});

describe("npm run reencrypt", () => {
  test("runs on the SQLite store with the service's settings", async () => {
    const location = await STORE_ENGINES[0]!.open();
    try {
      const store = new EncryptingIntegrationStore(await location.openPlain(), cipherOf(OLD));
      await store.create(sampleFields(), "one");
      await store.close();

      const { stdout } = await run(TSX, ["src/tools/reencrypt.ts", "--log-level", "warn"], {
        env: { ...process.env, ...location.command.env, ENCRYPTION_KEYS: `${OLD},${NEW}` },
        timeout: 60_000,
      });

      expect(stdout).toMatch(/^re-encrypted 1 of 1 integrations under key new in sqlite:.*\n$/);
      expect((await location.rawRow("one"))?.api_key).toMatch(/^v1:new:/);
    } finally {
      await location.dispose();
    }
  });

  test("--help lists only the settings it reads", async () => {
    const { stdout } = await run(TSX, ["src/tools/reencrypt.ts", "--help"], { env: process.env, timeout: 60_000 });

    expect(stdout).toMatch(/^Usage: npm run reencrypt -- \[--flag value \.\.\.\]\n/);
    const listed = [...stdout.matchAll(/^ {2}(--[a-z-]+), ([A-Z_]+)/gm)].map((match) => match[2]);
    expect(listed.sort()).toEqual(
      ["DATABASE_SCHEMA", "DATABASE_URL", "DATA_DIR", "ENCRYPTION_KEYS", "ENCRYPTION_KEYS_FILE", "LOG_LEVEL", "SQLITE_SYNCHRONOUS"],
    );
    expect(stdout).not.toContain("npm start");
    expect(stdout).not.toContain("--port");
    expect(stdout).not.toContain("TLS");
  });

  test("rejects a flag of the service only", async () => {
    const err: string[] = [];
    const sink = new Writable({ write: (_chunk, _encoding, callback) => callback() });

    const code = await runReencryptCommand(["--port", "8080"], {}, { out: () => undefined, err: (line) => err.push(line), logs: sink });

    expect(code).toBe(2);
    expect(err.join("\n")).toBe('reencrypt: Unknown argument "--port". Run with --help to list the settings.');
  });

  test("ignores the variables of the service only", async () => {
    const location = await STORE_ENGINES[0]!.open();
    try {
      const store = new EncryptingIntegrationStore(await location.openPlain(), cipherOf(OLD));
      await store.create(sampleFields(), "one");
      await store.close();
      const serviceOnly = { PORT: "not-a-port", TLS_CERT_FILE: "/nonexistent/cert.pem" };

      const result = await reencrypt(location, `${OLD},${NEW}`, serviceOnly);

      expect(result.err).toBe("");
      expect(result.code).toBe(0);
    } finally {
      await location.dispose();
    }
  });

  test("exits 2 for a data folder without the service's database", async () => {
    const dataDir = path.join(tmpdir(), `smsgateway-missing-${process.pid}-${Date.now()}`);
    const err: string[] = [];
    const sink = new Writable({ write: (_chunk, _encoding, callback) => callback() });

    const code = await runReencryptCommand([], { DATA_DIR: dataDir, ENCRYPTION_KEYS: `${OLD},${NEW}` }, { out: () => undefined, err: (line) => err.push(line), logs: sink });

    expect(code).toBe(2);
    expect(err.join("\n")).toBe(`reencrypt: no database at ${path.join(dataDir, "smsgateway.db")}; set DATA_DIR to the folder the service keeps its data in`);
    expect(existsSync(dataDir)).toBe(false);
  });

  test.skipIf(SKIP_POSTGRES)("exits 2 for a PostgreSQL schema that does not exist", async () => {
    const schema = `${uniqueSchemaName()}_Typo`;
    const err: string[] = [];
    const sink = new Writable({ write: (_chunk, _encoding, callback) => callback() });
    const env = { DATABASE_URL: TEST_DATABASE_URL, DATABASE_SCHEMA: schema, ENCRYPTION_KEYS: `${OLD},${NEW}` };

    try {
      const code = await runReencryptCommand([], env, { out: () => undefined, err: (line) => err.push(line), logs: sink });

      expect(code).toBe(2);
      expect(err.join("\n")).toBe(
        `reencrypt: DATABASE_SCHEMA "${schema}": no such schema in ${describePostgresUrl(TEST_DATABASE_URL)}, and nothing was created. ` +
          "The service creates the schema and its tables when it first starts with this DATABASE_SCHEMA; " +
          "check the name, which is case-sensitive, and DATABASE_URL.",
      );
      expect(await schemaExists(schema)).toBe(false);
    } finally {
      await dropSchema(schema);
    }
  });

  test("exits 2 for PostgreSQL without a key", async () => {
    const failure = await run(TSX, ["src/tools/reencrypt.ts"], {
      env: { ...process.env, DATABASE_URL: "postgres://postgres@127.0.0.1:1/unused", ENCRYPTION_KEYS: "", ENCRYPTION_KEYS_FILE: "" },
      timeout: 60_000,
    }).then(
      () => undefined,
      (error: { code: number; stderr: string }) => error,
    );

    expect(failure?.code).toBe(2);
    expect(failure?.stderr).toContain("reencrypt: No encryption key is configured for the PostgreSQL store");
  });
});
