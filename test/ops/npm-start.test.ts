import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { afterEach, describe, expect, test } from "vitest";

const cleanups: (() => void)[] = [];

afterEach(() => {
  for (const cleanup of cleanups.splice(0).reverse()) {
    cleanup();
  }
});

describe("npm start", () => {
  test("builds, serves and stops on SIGTERM", async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), "smsgateway-npm-start-"));
    cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
    const npm = spawn("npm", ["start", "--", "--host", "127.0.0.1", "--port", "0", "--data-dir", dataDir], {
      env: { ...process.env, API_KEYS: "", API_KEYS_FILE: "", LOG_LEVEL: "info" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    cleanups.push(() => npm.kill("SIGKILL"));
    const exited = new Promise<number | null>((resolve) => npm.once("exit", (code) => resolve(code)));
    const lines: Record<string, unknown>[] = [];
    const address = await new Promise<string>((resolve, reject) => {
      createInterface({ input: npm.stdout! }).on("line", (text) => {
        if (!text.startsWith("{")) {
          return;
        }
        const line = JSON.parse(text) as Record<string, unknown>;
        lines.push(line);
        if (typeof line.address === "string") {
          resolve(line.address);
        }
      });
      void exited.then((code) => reject(new Error(`npm start exited with code ${code} before listening`)));
    });

    const health = await fetch(`${address}/healthz`);
    const page = await fetch(`${address}/`);

    expect(health.status).toBe(200);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain("<html");

    npm.kill("SIGTERM");

    expect(await exited).toBe(0);
    expect(lines.at(-1)?.msg).toBe("stopped");
  }, 60_000);
});
