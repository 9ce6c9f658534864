import { describe, expect, test } from "vitest";
import { benchCommand, readSettings } from "../../bench/bench-settings.js";

describe("bench settings", () => {
  test("defaults", () => {
    expect(readSettings({}, [])).toEqual({ seconds: 2, rounds: 2, levels: [1, 16, 64, 256], soakSeconds: 60, write: false });
  });

  test("soak alone", () => {
    const settings = readSettings({ BENCH_ROUNDS: "0", BENCH_SOAK_SECONDS: "30" }, ["--write"]);

    expect(settings.rounds).toBe(0);
    expect(settings.soakSeconds).toBe(30);
    expect(settings.write).toBe(true);
  });

  test.each([
    ["BENCH_SECONDS", "0"],
    ["BENCH_ROUNDS", "-1"],
    ["BENCH_SOAK_SECONDS", "1.5"],
    ["BENCH_IN_FLIGHT", "1,x"],
  ])("invalid %s=%s", (name, value) => {
    expect(() => readSettings({ [name]: value }, [])).toThrow(name);
  });

  test("command names the set variables", () => {
    const env = { BENCH_SECONDS: "1", BENCH_SOAK_SECONDS: "15" };

    expect(benchCommand(readSettings(env, []), env)).toBe("BENCH_SECONDS=1 BENCH_SOAK_SECONDS=15 npm run bench");
  });
});
