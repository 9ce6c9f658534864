import { existsSync } from "node:fs";
import { mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, test } from "vitest";
import { makeDirectory } from "../src/make-directory.js";

const tempDirs: string[] = [];

afterEach(async () => {
  for (const dir of tempDirs.splice(0)) {
    await rm(dir, { recursive: true, force: true });
  }
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), "smsgateway-mkdir-"));
  tempDirs.push(dir);
  return dir;
}

describe("makeDirectory", () => {
  test("creates missing parents with the mode", async () => {
    const root = await tempDir();
    const target = path.join(root, "a", "b", "c");

    await makeDirectory(target, 0o700);

    expect((await stat(target)).mode & 0o777).toBe(0o700);
    expect((await stat(path.join(root, "a"))).mode & 0o777).toBe(0o700);
  });

  test("accepts an existing directory", async () => {
    const root = await tempDir();

    await makeDirectory(root, 0o700);
    await makeDirectory(root, 0o700);

    expect((await stat(root)).isDirectory()).toBe(true);
  });

  test("rejects a path under a file", async () => {
    const root = await tempDir();
    await writeFile(path.join(root, "file"), "");

    await expect(makeDirectory(path.join(root, "file", "data"), 0o700)).rejects.toMatchObject({ code: "ENOTDIR" });
  });

  // Node's recursive mkdir loops forever here; the test timeout turns a regression into a failure.
  test.runIf(existsSync("/proc/self"))("rejects a path under /proc", async () => {
    await expect(makeDirectory("/proc/smsgateway-missing/data", 0o700)).rejects.toMatchObject({ code: "ENOENT" });
  }, 5_000);
});
