import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { expect, test } from "vitest";

const run = promisify(execFile);

test("names an unknown argument", async () => {
  const failure = await run(process.execPath, ["--import", "tsx", "src/tools/local-gateway-main.ts", "--help"]).then(
    () => undefined,
    (error: unknown) => error as { code: number; stderr: string },
  );

  expect(failure?.code).toBe(1);
  expect(failure?.stderr).toContain('unknown argument "--help"; use --port N and --host ADDRESS');
});
