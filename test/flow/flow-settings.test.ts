import { describe, expect, test } from "vitest";

import { ConfigError, loadConfig } from "../../src/config/load-config.js";

function configFrom(env: Record<string, string>) {
  const loaded = loadConfig([], env);
  if (loaded.kind !== "run") {
    throw new Error("expected a configuration");
  }
  return loaded.config;
}

describe("flow-control settings", () => {
  test("defaults", () => {
    const config = configFrom({});

    expect(config.sendConcurrency).toBe(64);
    expect(config.sendRatePerSecond).toBe(0);
    expect(config.circuitFailureThreshold).toBe(5);
    expect(config.circuitOpenMs).toBe(30_000);
    expect(config.circuitHalfOpenProbes).toBe(1);
  });

  test.each([
    { value: "0", rate: 0 },
    { value: "0.01", rate: 0.01 },
    { value: "2.5", rate: 2.5 },
    { value: "100000", rate: 100_000 },
  ])("SEND_RATE_PER_SECOND accepts $value", ({ value, rate }) => {
    expect(configFrom({ SEND_RATE_PER_SECOND: value }).sendRatePerSecond).toBe(rate);
  });

  test.each(["-1", "0.001", "100001", "NaN", "Infinity", "1e3", "fast", ""])("SEND_RATE_PER_SECOND rejects %j", (value) => {
    expect(() => loadConfig([], { SEND_RATE_PER_SECOND: value })).toThrow(ConfigError);
    expect(() => loadConfig([], { SEND_RATE_PER_SECOND: value })).toThrow(/expected 0 for no limit, or a number from 0.01 to 100000/);
  });

  test.each([
    { env: { SEND_CONCURRENCY: "0" }, message: /^SEND_CONCURRENCY: .*from 1 to 10000/ },
    { env: { CIRCUIT_FAILURE_THRESHOLD: "-1" }, message: /^CIRCUIT_FAILURE_THRESHOLD: .*from 0 to 10000/ },
    { env: { CIRCUIT_OPEN_MS: "0" }, message: /^CIRCUIT_OPEN_MS: .*from 1 to 3600000/ },
    { env: { CIRCUIT_HALF_OPEN_PROBES: "0" }, message: /^CIRCUIT_HALF_OPEN_PROBES: .*from 1 to 10000/ },
  ])("rejects $env", ({ env, message }) => {
    expect(() => loadConfig([], env)).toThrow(message);
  });

  test("flags set the circuit breaker", () => {
    const loaded = loadConfig(["--circuit-failure-threshold", "0", "--circuit-open-ms=250", "--circuit-half-open-probes", "3"], {});

    expect(loaded.kind).toBe("run");
    expect(loaded.kind === "run" ? loaded.config : undefined).toMatchObject({
      circuitFailureThreshold: 0,
      circuitOpenMs: 250,
      circuitHalfOpenProbes: 3,
    });
  });
});
