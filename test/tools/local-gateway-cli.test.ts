import { execFile, spawn } from "node:child_process";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import net from "node:net";
import { createInterface } from "node:readline";
import { promisify } from "node:util";
import { expect, test } from "vitest";
import { parseOptions } from "../../src/tools/local-gateway-options.js";
import { startLocalGateway } from "../../src/tools/local-gateway.js";

const run = promisify(execFile);
const MAIN = ["--import", "tsx", "src/tools/local-gateway-main.ts"];

/**
 * Runs the gateway's command line, which must fail, and returns its exit code and stderr.
 * A gateway that starts instead is killed after 5 s, and `code` is then null.
 */
async function failedRun(args: string[], environment: NodeJS.ProcessEnv = {}): Promise<{ code: number; stderr: string } | undefined> {
  const options = { env: { ...process.env, GATEWAY_PORT: "", ...environment }, timeout: 5_000 };
  return run(process.execPath, [...MAIN, ...args], options).then(
    () => undefined,
    (error: unknown) => error as { code: number; stderr: string },
  );
}

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

test.each([
  { args: ["--port"], message: "--port is missing its value; give one, as in --port 9191" },
  { args: ["--port="], message: "--port is missing its value; give one, as in --port 9191" },
  { args: ["--port", "--host", "127.0.0.1"], message: "--port is missing its value; give one, as in --port 9191" },
  { args: ["--host"], message: "--host is missing its value; give one, as in --host ::1" },
  { args: ["--port", "abc"], message: '--port must be a whole number from 0 to 65535 (0 picks any free port), got "abc"' },
  { args: ["--port", "65536"], message: '--port must be a whole number from 0 to 65535 (0 picks any free port), got "65536"' },
  { args: ["--port", "1e3"], message: '--port must be a whole number from 0 to 65535 (0 picks any free port), got "1e3"' },
  { args: ["constructor"], message: 'unknown argument "constructor"' },
])("options $args are rejected", ({ args, message }) => {
  expect(() => parseOptions(args, {})).toThrow(message);
});

test.each([
  { args: [], environment: {}, expected: { host: "127.0.0.1", port: 9090 } },
  { args: ["--port", "9191"], environment: {}, expected: { host: "127.0.0.1", port: 9191 } },
  { args: ["--port=0", "--host=::1"], environment: {}, expected: { host: "::1", port: 0 } },
  { args: [], environment: { GATEWAY_PORT: "9292" }, expected: { host: "127.0.0.1", port: 9292 } },
  { args: [], environment: { GATEWAY_PORT: " " }, expected: { host: "127.0.0.1", port: 9090 } },
  { args: ["--port", "9191"], environment: { GATEWAY_PORT: "abc" }, expected: { host: "127.0.0.1", port: 9191 } },
])("options $args with $environment", ({ args, environment, expected }) => {
  expect(parseOptions(args, environment)).toEqual(expected);
});

test("port without a value fails", async () => {
  const failure = await failedRun(["--port"]);

  expect(failure?.code).toBe(1);
  expect(failure?.stderr).toContain("--port is missing its value; give one, as in --port 9191");
});

test("invalid GATEWAY_PORT is named", async () => {
  const failure = await failedRun([], { GATEWAY_PORT: "abc" });

  expect(failure?.code).toBe(1);
  expect(failure?.stderr).toContain('GATEWAY_PORT must be a whole number from 0 to 65535 (0 picks any free port), got "abc"');
  expect(failure?.stderr).not.toContain("--port");
});

test("port in use names the fix", async () => {
  const holder = net.createServer();
  await new Promise<void>((resolve) => holder.listen(0, "127.0.0.1", resolve));
  const { port } = holder.address() as net.AddressInfo;
  try {
    const failure = await failedRun(["--port", String(port)]);

    expect(failure?.code).toBe(1);
    expect(failure?.stderr).toContain(
      `local gateway: another process already listens on 127.0.0.1 port ${port} (EADDRINUSE); stop it, ` +
        "or pick a free port with --port N or GATEWAY_PORT (0 picks one) and use that port in the integration's URLs",
    );
  } finally {
    holder.close();
  }
});

/** True when Linux lets a socket bind to an address the machine does not have (`net.ipv4.ip_nonlocal_bind`). */
function bindsNonlocalAddresses(): boolean {
  try {
    return readFileSync("/proc/sys/net/ipv4/ip_nonlocal_bind", "utf8").trim() === "1";
  } catch {
    return false;
  }
}

test.skipIf(bindsNonlocalAddresses())("address not on this machine is named", async () => {
  // 192.0.2.1 is a documentation address (RFC 5737), so the bind fails locally and sends no packet.
  await expect(startLocalGateway({ host: "192.0.2.1", port: 0 }, () => undefined)).rejects.toThrow(
    "192.0.2.1 is not an address of this machine (EADDRNOTAVAIL); use --host 127.0.0.1, or --host ::1",
  );
});

test("IPv6 address is bracketed in the URL", async () => {
  const { server, url } = await startLocalGateway({ host: "::1", port: 0 }, () => undefined);
  try {
    expect(url).toMatch(/^http:\/\/\[::1\]:\d+$/);
    const reply = await fetch(`${url}/sms`, { method: "POST", body: JSON.stringify({ to: "+15550001111", content: "hi" }) });
    expect(reply.status).toBe(200);
  } finally {
    server.close();
  }
});

test("command line prints a bracketed IPv6 URL", async () => {
  const child = spawn(process.execPath, [...MAIN, "--host", "::1", "--port", "0"], { stdio: ["ignore", "pipe", "inherit"] });
  try {
    const [firstLine] = (await once(createInterface({ input: child.stdout }), "line")) as [string];

    expect(firstLine).toMatch(/^local SMS gateway listening on http:\/\/\[::1\]:\d+ \(POST http:\/\/\[::1\]:\d+\/sms for messages/);
  } finally {
    child.kill();
  }
});

test("auth returns a new token each time", async () => {
  const { server, url } = await startLocalGateway({ host: "127.0.0.1", port: 0 }, () => undefined);
  try {
    const first = (await (await fetch(`${url}/auth`, { method: "POST" })).json()) as { data: { token: string; expires_in: number } };
    const second = (await (await fetch(`${url}/auth`, { method: "POST", body: "{}" })).json()) as { data: { token: string } };

    expect(first.data.token).toMatch(/^tok_[0-9a-f-]{36}$/);
    expect(first.data.expires_in).toBe(3600);
    expect(second.data.token).not.toBe(first.data.token);
  } finally {
    server.close();
  }
});
