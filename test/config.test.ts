import { readFileSync } from "node:fs";
import { describe, expect, test } from "vitest";
import { ConfigError, helpText, loadConfig } from "../src/config/load-config.js";
import { SETTINGS } from "../src/config/settings.js";

function run(argv: string[], env: Record<string, string> = {}) {
  const loaded = loadConfig(argv, env);
  if (loaded.kind !== "run") {
    throw new Error("expected a configuration");
  }
  return loaded.config;
}

describe("loadConfig", () => {
  test("defaults", () => {
    const config = run([]);

    expect(config.port).toBe(8080);
    expect(config.host).toBe("127.0.0.1");
    expect(config.dataDir).toBe("./data");
    expect(config.databaseUrl).toBe("");
    expect(config.sendTimeoutMs).toBe(10_000);
    expect(config.maxReplyBytes).toBe(1_048_576);
  });

  test("database schema", () => {
    expect(run([]).databaseSchema).toBe("public");
    expect(run([], { DATABASE_URL: "postgres://db/x", DATABASE_SCHEMA: " Tenant_A " }).databaseSchema).toBe("Tenant_A");
    expect(run(["--database-schema", "public"]).databaseSchema).toBe("public");
  });

  test("sqlite synchronous mode", () => {
    expect(run([]).sqliteSynchronous).toBe("normal");
    expect(run([], { SQLITE_SYNCHRONOUS: " FULL " }).sqliteSynchronous).toBe("full");
    expect(run(["--sqlite-synchronous", "normal"], { DATABASE_URL: "postgres://db/x" }).sqliteSynchronous).toBe("normal");
  });

  test("flag beats environment", () => {
    expect(run(["--port", "9000"], { PORT: "7000" }).port).toBe(9000);
    expect(run(["--port=9001"], { PORT: "7000" }).port).toBe(9001);
    expect(run([], { PORT: "7000" }).port).toBe(7000);
  });

  test.each([
    { argv: [], env: { PORT: "http" }, message: /^PORT: invalid value "http"/ },
    { argv: ["--port", "70000"], env: {}, message: /^--port: invalid value "70000": expected a whole number from 0 to 65535/ },
    { argv: [], env: { DATABASE_URL: "mysql://x" }, message: /postgres:\/\// },
    { argv: [], env: { DATABASE_URL: "postgresql://app:pw-9@/sms?host=/run/postgresql" }, message: /For a Unix socket, leave the host empty/ },
    { argv: [], env: { LOG_LEVEL: "loud" }, message: /expected one of/ },
    { argv: ["--nope"], env: {}, message: /Unknown argument "--nope"/ },
    { argv: ["--port"], env: {}, message: /--port needs a value/ },
    { argv: [], env: { TLS_CERT_FILE: "cert.pem" }, message: /^TLS_CERT_FILE is set without TLS_KEY_FILE \(--tls-key-file\)/ },
    { argv: [], env: { RETRY_BASE_DELAY_MS: "500", RETRY_MAX_DELAY_MS: "100" }, message: /RETRY_MAX_DELAY_MS \(100\) is below/ },
    { argv: [], env: { DATABASE_SCHEMA: "tenant_a" }, message: /DATABASE_SCHEMA \("tenant_a"\) applies only to PostgreSQL/ },
    { argv: [], env: { DATABASE_URL: "postgres://db/x", DATABASE_SCHEMA: " " }, message: /^DATABASE_SCHEMA: invalid value " ": expected a schema name of 1 to 63 bytes/ },
    { argv: [], env: { DATABASE_URL: "postgres://db/x", DATABASE_SCHEMA: "s".repeat(64) }, message: /expected a schema name of 1 to 63 bytes/ },
    { argv: [], env: { DATA_DIR: " " }, message: /^DATA_DIR: invalid value " ": expected a folder path/ },
    { argv: [], env: { SQLITE_SYNCHRONOUS: "off" }, message: /^SQLITE_SYNCHRONOUS: invalid value "off": expected one of normal, full/ },
    { argv: [], env: { DATABASE_URL: "postgres://db/x", SQLITE_SYNCHRONOUS: "full" }, message: /SQLITE_SYNCHRONOUS \("full"\) applies only to the embedded SQLite file/ },
  ])("rejects $message", ({ argv, env, message }) => {
    expect(() => loadConfig(argv, env)).toThrow(ConfigError);
    expect(() => loadConfig(argv, env)).toThrow(message);
  });

  test("help lists every setting", () => {
    expect(loadConfig(["--help"], {}).kind).toBe("help");

    const text = helpText();
    for (const setting of SETTINGS) {
      expect(text).toContain(`${setting.flag}, ${setting.env}`);
    }
  });
});

test("README settings table matches the code", () => {
  const readme = readFileSync("README.md", "utf8");
  const rows = readme
    .split("\n")
    .filter((line) => /^\| `[A-Z_]+` \| `--/.test(line))
    .map((line) => line.split("|").map((cell) => cell.trim()));

  expect(rows.map((cells) => cells[1])).toEqual(SETTINGS.map((s) => `\`${s.env}\``));
  for (const setting of SETTINGS) {
    const cells = rows.find((row) => row[1] === `\`${setting.env}\``) ?? [];
    expect(cells[2]).toBe(`\`${setting.flag}\``);
    expect(cells[3]).toBe(setting.defaultValue === "" ? "unset" : `\`${setting.defaultValue}\``);
    expect(cells[4]).toBe(setting.unit);
    expect(cells[5]).toBe(setting.description);
  }
});
