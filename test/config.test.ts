import { readFileSync } from "node:fs";
import { describe, expect, test } from "vitest";
import { ConfigError, helpText, loadConfig } from "../src/config/load-config.js";
import { SETTINGS } from "../src/config/settings.js";
import { FIRST_REQUEST_TIMEOUT_MS } from "../src/server/first-request-router.js";

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

  test.each([
    { argv: ["--prot", "8080"], message: 'Unknown argument "--prot". Did you mean --port? Run with --help to list the settings.' },
    { argv: ["--api-key=ops:not-for-stderr"], message: 'Unknown argument "--api-key=...". Did you mean --api-keys? Run with --help to list the settings.' },
    { argv: ["-port", "8080"], message: 'Unknown argument "-port". Did you mean --port? Run with --help to list the settings.' },
    { argv: ["--LOG-LEVEL", "info"], message: 'Unknown argument "--LOG-LEVEL". Did you mean --log-level? Run with --help to list the settings.' },
    { argv: ["--sned-timeout-ms", "500"], message: 'Unknown argument "--sned-timeout-ms". Did you mean --send-timeout-ms? Run with --help to list the settings.' },
    { argv: ["--hepl"], message: 'Unknown argument "--hepl". Did you mean --help? Run with --help to list the settings.' },
    { argv: ["--verbose"], message: 'Unknown argument "--verbose". Run with --help to list the settings.' },
    { argv: ["8080"], message: "Argument 1 is a value without a flag. Write it after its flag, as --name value or --name=value. Run with --help to list the settings." },
    { argv: ["prot", "8080"], message: "Argument 1 is a value without a flag. Write it after its flag, as --name value or --name=value. Did you mean --port? Run with --help to list the settings." },
    { argv: ["--"], message: 'Unknown argument "--". Run with --help to list the settings.' },
  ])("unknown flag $argv.0 gets the closest flag", ({ argv, message }) => {
    expect(() => loadConfig(argv, {})).toThrow(new ConfigError(message));
  });

  test("a stray value is not printed, because it may be a key", () => {
    // Keys separated by a space instead of a comma leave the second one without a flag.
    const argv = ["--api-keys", "ops:first-key", "ops:second-key-not-for-stderr"];
    expect(() => loadConfig(argv, {})).toThrow(
      new ConfigError("Argument 3 is a value without a flag. Write it after its flag, as --name value or --name=value. Run with --help to list the settings."),
    );
  });

  test("help lists every setting", () => {
    expect(loadConfig(["--help"], {}).kind).toBe("help");

    const text = helpText();
    for (const setting of SETTINGS) {
      expect(text).toContain(`${setting.flag}, ${setting.env}`);
    }
  });
});

describe("FIRST_REQUEST_TIMEOUT_MS", () => {
  test("defaults to the server's 60 s", () => {
    expect(run([]).firstRequestTimeoutMs).toBe(60_000);
    expect(run([]).firstRequestTimeoutMs).toBe(FIRST_REQUEST_TIMEOUT_MS);
  });

  test.each<{ argv: string[]; env: Record<string, string>; expected: number }>([
    { argv: [], env: { FIRST_REQUEST_TIMEOUT_MS: "1000" }, expected: 1_000 },
    { argv: [], env: { FIRST_REQUEST_TIMEOUT_MS: " 300000 " }, expected: 300_000 },
    { argv: ["--first-request-timeout-ms", "5000"], env: { FIRST_REQUEST_TIMEOUT_MS: "9000" }, expected: 5_000 },
    { argv: ["--first-request-timeout-ms=15000"], env: {}, expected: 15_000 },
  ])("reads $expected", ({ argv, env, expected }) => {
    expect(run(argv, env).firstRequestTimeoutMs).toBe(expected);
  });

  test.each([
    { argv: [], env: { FIRST_REQUEST_TIMEOUT_MS: "999" }, name: "FIRST_REQUEST_TIMEOUT_MS", value: "999" },
    { argv: [], env: { FIRST_REQUEST_TIMEOUT_MS: "300001" }, name: "FIRST_REQUEST_TIMEOUT_MS", value: "300001" },
    { argv: [], env: { FIRST_REQUEST_TIMEOUT_MS: "0" }, name: "FIRST_REQUEST_TIMEOUT_MS", value: "0" },
    { argv: [], env: { FIRST_REQUEST_TIMEOUT_MS: "1.5" }, name: "FIRST_REQUEST_TIMEOUT_MS", value: "1.5" },
    { argv: [], env: { FIRST_REQUEST_TIMEOUT_MS: "60s" }, name: "FIRST_REQUEST_TIMEOUT_MS", value: "60s" },
    { argv: ["--first-request-timeout-ms", "-5"], env: {}, name: "--first-request-timeout-ms", value: "-5" },
  ])("rejects $value from $name", ({ argv, env, name, value }) => {
    expect(() => loadConfig(argv, env)).toThrow(ConfigError);
    expect(() => loadConfig(argv, env)).toThrow(`${name}: invalid value "${value}": expected a whole number from 1000 to 300000.`);
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
