import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";

import { describe, expect, test } from "vitest";
import { closedLoopbackUrl } from "../helpers/scripted-gateway.js";
import { runServiceUntilExit } from "../helpers/service-process.js";

/** Returns a PostgreSQL URL on a loopback port that was just closed, so connecting to it is refused. */
async function unreachableDatabaseUrl(): Promise<string> {
  const { port } = new URL(await closedLoopbackUrl());
  return `postgres://postgres@127.0.0.1:${port}/test`;
}

describe("failed start", () => {
  // Both fail after the logger exists: storage while it opens, API_KEYS_FILE in the security set-up.
  const cases = [
    {
      name: "unreachable storage exits 2",
      env: async () => ({ DATABASE_URL: await unreachableDatabaseUrl(), ENCRYPTION_KEYS: `k1:${randomBytes(32).toString("base64")}` }),
      exitCode: 2,
      failure: /^DATABASE_URL postgres:\/\/postgres@127\.0\.0\.1:\d+\/test: cannot connect to PostgreSQL: .*\(ECONNREFUSED\)/,
      stderr: /^smsgateway: DATABASE_URL postgres:\/\/postgres@127\.0\.0\.1:\d+\/test: cannot connect to PostgreSQL/,
    },
    {
      name: "a missing API_KEYS_FILE exits 2",
      env: async () => ({ API_KEYS_FILE: "/nonexistent/smsgateway-api-keys" }),
      exitCode: 2,
      failure: /^API_KEYS_FILE \/nonexistent\/smsgateway-api-keys cannot be read: not found \(ENOENT\)/,
      stderr: /^smsgateway: API_KEYS_FILE \/nonexistent\/smsgateway-api-keys cannot be read/,
    },
  ];

  test.each(cases)("$name", async ({ env, exitCode, failure, stderr }) => {
    const dataDir = await mkdtemp(path.join(tmpdir(), "smsgateway-failed-start-"));
    const run = await runServiceUntilExit([], { DATA_DIR: dataDir, ...(await env()) }).finally(() => rm(dataDir, { recursive: true, force: true }));

    expect(run.code).toBe(exitCode);
    expect(run.stdout.endsWith("\n")).toBe(true);
    const lastLine = JSON.parse(run.stdout.trimEnd().split("\n").at(-1) ?? "") as Record<string, unknown>;
    expect(lastLine).toMatchObject({ level: 50, msg: "failed to start", exitCode });
    expect(lastLine.error).toMatch(failure);
    expect(run.stderr).toMatch(stderr);
  });
});
