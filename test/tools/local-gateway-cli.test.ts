import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { expect, test } from "vitest";

const run = promisify(execFile);

test("names an unknown argument", async () => {
  const failure = await run(process.execPath, ["--import", "tsx", "src/tools/local-gateway-main.ts", "--nope"]).then(
    () => undefined,
    (error: unknown) => error as { code: number; stderr: string },
  );

  expect(failure?.code).toBe(1);
  expect(failure?.stderr).toContain('unknown argument "--nope"; use --port N and --host ADDRESS');
});

test("prints its usage for --help", async () => {
  const { stdout } = await run(process.execPath, ["--import", "tsx", "src/tools/local-gateway-main.ts", "--help"]);

  expect(stdout).toContain("Usage: npm run gateway -- [--port N] [--host ADDRESS]");
  expect(stdout).toContain("--port N");
});

test("rejects a body without to and content", async () => {
  const { startLocalGateway } = await import("../../src/tools/local-gateway.js");
  const lines: string[] = [];
  const { server, url } = await startLocalGateway({ host: "127.0.0.1", port: 0 }, (line) => lines.push(line));
  try {
    const post = (body: unknown) => fetch(`${url}/sms`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

    const wrong = await post({ id: "demo" });
    const right = await post({ to: "+15550001111", content: "hi", sender: "Acme" });

    expect(wrong.status).toBe(400);
    expect(await wrong.json()).toEqual({ error: 'expected a JSON object with the strings "to" and "content", as smsgateway sends them' });
    expect(right.status).toBe(200);
    expect(lines).toHaveLength(1);
  } finally {
    server.close();
  }
});
