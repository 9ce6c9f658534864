import { execFile } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, test } from "vitest";

/** Output and exit code of the held-write child process. */
interface ChildRun {
  messages: string[];
  stderr: string;
  code: number | null;
}

/**
 * Runs test/helpers/held-log-write.ts with its only thread-pool thread held,
 * so that the first log line's write is still in progress when it exits the
 * way `exitPath` names, and returns the messages of its log lines.
 */
async function runWithHeldWrite(exitPath: "stop" | "failed-start"): Promise<ChildRun> {
  const dir = mkdtempSync(path.join(tmpdir(), "smsgateway-log-exit-"));
  try {
    const fifo = path.join(dir, "thread-pool-block");
    await new Promise<void>((resolve, reject) => execFile("mkfifo", [fifo], (error) => (error ? reject(error) : resolve())));

    return await new Promise<ChildRun>((resolve) => {
      const args = ["--import", "tsx", "test/helpers/held-log-write.ts", fifo, exitPath];
      const options = { env: { ...process.env, UV_THREADPOOL_SIZE: "1" }, timeout: 30_000 };
      const child = execFile(process.execPath, args, options, (_error, stdout, stderr) => {
        const messages = stdout
          .split("\n")
          .filter((line) => line !== "")
          .map((line) => (JSON.parse(line) as { msg: string }).msg);
        resolve({ messages, stderr, code: child.exitCode });
      });
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe("log writes at exit", () => {
  // The service logs "shutting down" and, a few milliseconds later, "stopped".
  // When the write of the first line still waits for a thread-pool thread at
  // exit, the exit flush writes the later lines, and the first comes after
  // them or never. The child blocks the only thread for 500 ms, so a fixed
  // wait before the exit shorter than that fails this test.
  test("a delayed write keeps its order", async () => {
    const run = await runWithHeldWrite("stop");

    expect(run.messages).toEqual(["first", "second"]);
    expect(run.code).toBe(0);
  });

  // An exit at once after the failure line puts it before the held line, or loses the held line.
  test("a failed start keeps its order", async () => {
    const run = await runWithHeldWrite("failed-start");

    expect(run.messages).toEqual(["first", "failed to start"]);
    expect(run.code).toBe(1);
    expect(run.stderr).toBe("smsgateway: failed to start: storage is unreachable\n");
  });
});
