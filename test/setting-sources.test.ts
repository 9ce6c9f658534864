import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import { createServer, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";

import { afterAll, afterEach, describe, expect, test } from "vitest";

import { startApp } from "../src/app.js";
import { ConfigError, loadConfig } from "../src/config/load-config.js";
import { SETTINGS, type Setting, type SettingKey } from "../src/config/settings.js";
import { keyEntry } from "./security/security-fixtures.js";
import { silentLogger } from "./store/integration-fixtures.js";

/** A value of one setting that start-up rejects, and the accepted values its message must name. */
interface BadValue {
  key: SettingKey;
  value: string;
  /** Other settings the case needs, always given as environment variables. */
  env?: Record<string, string>;
  accepted: RegExp;
}

/** A folder path below a file, which no one can create. */
const INSIDE_A_FILE = path.resolve("package.json", "data");

// A port that another server listens on, so the service cannot bind it.
const busy = createServer();
busy.listen(0, "127.0.0.1");
await once(busy, "listening");
const busyPort = (busy.address() as AddressInfo).port;

afterAll(() => {
  busy.close();
});

const SPECIAL_CASES: BadValue[] = [
  { key: "host", value: "http://0.0.0.0", accepted: /expected an IP address such as 127\.0\.0\.1/ },
  { key: "host", value: "0.0.0.0", accepted: /Set API_KEYS or API_KEYS_FILE/ },
  { key: "port", value: "70000", accepted: /expected a whole number from 0 to 65535/ },
  { key: "port", value: String(busyPort), accepted: /\(EADDRINUSE\); stop it, or set (PORT|--port) to a free port/ },
  { key: "dataDir", value: " ", accepted: /expected a folder path/ },
  { key: "dataDir", value: INSIDE_A_FILE, accepted: /\(ENOTDIR\); set (DATA_DIR|--data-dir) to a folder that the service can create/ },
  {
    key: "dataDir",
    value: INSIDE_A_FILE,
    env: { ENCRYPTION_KEYS: keyEntry("k") },
    accepted: /cannot create or open the SQLite database .*\(ENOTDIR\); set (DATA_DIR|--data-dir) to a folder/,
  },
  { key: "databaseUrl", value: "mysql://db/x", accepted: /expected a postgres:\/\/ or postgresql:\/\/ URL/ },
  { key: "databaseUrl", value: "postgres://user:p#ss@db/x", accepted: /percent-encoded/ },
  {
    key: "databaseUrl",
    value: "postgres://postgres@127.0.0.1:1/test",
    env: { ENCRYPTION_KEYS: keyEntry("k") },
    accepted: /cannot connect to PostgreSQL: .*; check that PostgreSQL runs/,
  },
  { key: "logLevel", value: "loud", accepted: /expected one of fatal, error/ },
  { key: "tlsCertFile", value: "/tmp/cert.pem", accepted: /set both for TLS, or neither/ },
  { key: "tlsKeyFile", value: "/tmp/key.pem", accepted: /set both for TLS, or neither/ },
  {
    key: "tlsCertFile",
    value: "/nonexistent/cert.pem",
    env: { TLS_KEY_FILE: "/nonexistent/key.pem" },
    accepted: /cannot be read: not found \(ENOENT\); expected a PEM certificate chain/,
  },
  {
    key: "tlsKeyFile",
    value: "/nonexistent/key.pem",
    env: { TLS_CERT_FILE: path.resolve("package.json") },
    accepted: /cannot be read: not found \(ENOENT\); expected a PEM private key/,
  },
  { key: "outboundAllow", value: "10.0.0.0/33", accepted: /invalid prefix length; use 0 to 32/ },
  { key: "sendRatePerSecond", value: "fast", accepted: /expected 0 for no limit/ },
  { key: "encryptionKeys", value: "no-colon", accepted: /write each key as keyId:base64key/ },
  { key: "encryptionKeysFile", value: "/nonexistent/keys", accepted: /cannot be read: not found \(ENOENT\); expected a file of keyId:base64key entries/ },
  { key: "apiKeys", value: "no-colon", accepted: /name:scope\+scope:sha256hex/ },
  { key: "apiKeysFile", value: "/nonexistent/api-keys", accepted: /cannot be read: not found \(ENOENT\); expected a file of name:scope/ },
  { key: "corsAllowedOrigins", value: "https://app.example.com/", accepted: /write scheme:\/\/host\[:port\]/ },
  { key: "retryMaxDelayMs", value: "100", env: { RETRY_BASE_DELAY_MS: "500" }, accepted: /at least as long as the base delay/ },
  { key: "databaseSchema", value: " ", env: { DATABASE_URL: "postgres://db/x" }, accepted: /expected a schema name of 1 to 63 bytes/ },
  { key: "databaseSchema", value: "tenant_a", accepted: /set DATABASE_URL \(--database-url\) too/ },
  { key: "sqliteSynchronous", value: "off", accepted: /expected one of normal, full/ },
  { key: "sqliteSynchronous", value: "full", env: { DATABASE_URL: "postgres://db/x" }, accepted: /applies only to the embedded SQLite file/ },
];

/** Every whole-number setting without a case of its own gets a word where the number belongs. */
const NUMBER_CASES: BadValue[] = SETTINGS.filter(
  (setting) => /^\d+$/.test(setting.defaultValue) && !SPECIAL_CASES.some((special) => special.key === setting.key),
).map((setting) => ({ key: setting.key, value: "many", accepted: /expected a whole number from \d+ to \d+/ }));

const CASES = [...SPECIAL_CASES, ...NUMBER_CASES];

function settingOf(key: SettingKey): Setting {
  const setting = SETTINGS.find((candidate) => candidate.key === key);
  if (setting === undefined) {
    throw new Error(`no setting ${key}`);
  }
  return setting;
}

const tempDirs: string[] = [];

afterEach(async () => {
  for (const dir of tempDirs.splice(0)) {
    await rm(dir, { recursive: true, force: true });
  }
});

/** Loads the configuration and starts the service as `npm start` would, and returns the start-up error. */
async function startupError(argv: string[], env: Record<string, string>): Promise<Error> {
  const dataDir = await mkdtemp(path.join(tmpdir(), "smsgateway-sources-"));
  tempDirs.push(dataDir);
  try {
    const loaded = loadConfig(argv, { DATA_DIR: dataDir, ...env });
    if (loaded.kind === "run") {
      const app = await startApp(loaded.config, silentLogger());
      await app.close(0);
    }
  } catch (error) {
    return error as Error;
  }
  throw new Error("the service started");
}

describe("a start-up error names the setting as it was given", () => {
  test("every setting has a bad value", () => {
    const covered = new Set(CASES.map((badValue) => badValue.key));

    expect(SETTINGS.filter((setting) => !covered.has(setting.key)).map((setting) => setting.env)).toEqual([]);
  });

  describe.each(CASES.map((badValue) => ({ ...badValue, env: badValue.env ?? {}, setting: settingOf(badValue.key) })))(
    "$setting.env $value",
    ({ setting, value, env, accepted }) => {
      test("as a flag", async () => {
        const error = await startupError([setting.flag, value], env);

        expect(error).toBeInstanceOf(ConfigError);
        expect(error.message).toContain(setting.flag);
        expect(error.message).not.toContain(setting.env);
        expect(error.message).toMatch(accepted);
      });

      test("as an environment variable", async () => {
        const error = await startupError([], { ...env, [setting.env]: value });

        expect(error).toBeInstanceOf(ConfigError);
        expect(error.message).toContain(setting.env);
        expect(error.message).not.toContain(setting.flag);
        expect(error.message).toMatch(accepted);
      });
    },
  );

  test("a flag names itself although the variable is set too", async () => {
    const error = await startupError(["--sqlite-synchronous", "full"], { SQLITE_SYNCHRONOUS: "normal", DATABASE_URL: "postgres://db/x" });

    expect(error.message).toMatch(/^--sqlite-synchronous \("full"\) applies only/);
  });

  test("a database URL is not shown", async () => {
    const error = await startupError(["--database-url", "mysql://user:hunter2@db/x"], {});

    expect(error.message).toBe(
      "--database-url: invalid value (not shown, as it may contain a password): its scheme is mysql:; " +
        "expected a postgres:// or postgresql:// URL, or nothing for the embedded SQLite file.",
    );
  });
});
