import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { describe, expect, test } from "vitest";

const run = promisify(execFile);

describe("log writes at exit", () => {
  // The service logs "shutting down" and, a few milliseconds later, "stopped".
  // When the write of the first line still waits for a thread-pool thread at
  // exit, the exit flush writes the later lines, and the first comes after
  // them or never. The child blocks the only thread for 500 ms, so a fixed
  // wait before the exit shorter than that fails this test.
  test("a delayed write keeps its order", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "smsgateway-log-exit-"));
    try {
      const fifo = path.join(dir, "thread-pool-block");
      await run("mkfifo", [fifo]);

      const { stdout } = await run(process.execPath, ["--import", "tsx", "test/helpers/held-log-write.ts", fifo], {
        env: { ...process.env, UV_THREADPOOL_SIZE: "1" },
        timeout: 30_000,
      });

      const messages = stdout
        .split("\n")
        .filter((line) => line !== "")
        .map((line) => (JSON.parse(line) as { msg: string }).msg);
      expect(messages).toEqual(["first", "second"]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
