import { describe, expect, test } from "vitest";
import { ConfigError, helpText, loadConfig } from "../../src/config/load-config.js";
import { parseAllowedOrigins } from "../../src/server/cors.js";

function run(env: Record<string, string>) {
  const loaded = loadConfig([], env);
  if (loaded.kind !== "run") {
    throw new Error("expected a configuration");
  }
  return loaded.config;
}

describe("operations settings", () => {
  test("defaults", () => {
    const config = run({});

    expect(config.shutdownGraceMs).toBe(20_000);
    expect(config.corsAllowedOrigins).toEqual([]);
  });

  test("reads SHUTDOWN_GRACE_MS", () => {
    expect(run({ SHUTDOWN_GRACE_MS: "0" }).shutdownGraceMs).toBe(0);
    expect(run({ SHUTDOWN_GRACE_MS: "45000" }).shutdownGraceMs).toBe(45_000);
    expect(() => run({ SHUTDOWN_GRACE_MS: "-1" })).toThrow(/^SHUTDOWN_GRACE_MS: invalid value "-1": expected a whole number from 0 to 600000/);
  });

  test("reads CORS_ALLOWED_ORIGINS", () => {
    expect(run({ CORS_ALLOWED_ORIGINS: " https://app.example.com , http://localhost:5173," }).corsAllowedOrigins).toEqual([
      "https://app.example.com",
      "http://localhost:5173",
    ]);
    expect(run({ CORS_ALLOWED_ORIGINS: "*" }).corsAllowedOrigins).toEqual(["*"]);
  });

  test.each([
    "https://app.example.com/",
    "https://app.example.com/path",
    "app.example.com",
    "HTTPS://APP.EXAMPLE.COM",
    "ftp://files.example.com",
    "https://app.example.com:443",
  ])("rejects origin %s", (origin) => {
    expect(() => parseAllowedOrigins(origin)).toThrow(`"${origin}" is not an origin`);
    expect(() => run({ CORS_ALLOWED_ORIGINS: origin })).toThrow(ConfigError);
  });

  test("help names both settings with units", () => {
    const text = helpText();

    expect(text).toContain("--shutdown-grace-ms, SHUTDOWN_GRACE_MS (ms)");
    expect(text).toContain("--cors-allowed-origins, CORS_ALLOWED_ORIGINS\n");
  });
});
