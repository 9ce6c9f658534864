import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { promisify } from "node:util";

import { afterEach, describe, expect, test } from "vitest";

import { IntegrationService } from "../../gen/smsgateway/v1/integration_service_pb.js";
import { SmsService } from "../../gen/smsgateway/v1/sms_service_pb.js";
import { ConfigError } from "../../src/config/load-config.js";
import { environmentNames } from "../../src/config/settings.js";
import { PROCEDURE_SCOPES, PUBLIC_PROCEDURES } from "../../src/rpc/procedure-scopes.js";
import { loadApiKeys } from "../../src/security/api-key-source.js";
import { hashApiKey, parseApiKeys, parseScopes } from "../../src/security/api-keys.js";
import { runCreateApiKeyCommand } from "../../src/security/create-api-key-command.js";
import { isLoopbackHost } from "../../src/security/loopback-host.js";
import { createApiKey, parseCreateApiKeyOutput } from "./security-fixtures.js";

const run = promisify(execFile);
const TSX = path.resolve("node_modules/.bin/tsx");
const HASH = "a".repeat(64);

describe("parseApiKeys", () => {
  test("reads names, scopes and hashes", () => {
    const keys = parseApiKeys(`# comment, with: colons\nci:sms:send:${HASH}, ops:integrations:read+integrations:write:${"B".repeat(64)}`, "API_KEYS");

    expect(keys.map((key) => key.name)).toEqual(["ci", "ops"]);
    expect([...(keys[0]?.scopes ?? [])]).toEqual(["sms:send"]);
    expect([...(keys[1]?.scopes ?? [])]).toEqual(["integrations:read", "integrations:write"]);
    expect(keys[1]?.hash.toString("hex")).toBe("b".repeat(64));
  });

  test("empty text has no keys", () => {
    expect(parseApiKeys(" \n# nothing\n", "API_KEYS")).toEqual([]);
  });

  test.each([
    { text: "ci", message: /entry 1 is not name:scope\+scope:sha256hex/ },
    { text: `ci:${HASH}`, message: /entry 1 is not name:scope/ },
    { text: `c i:sms:send:${HASH}`, message: /name "c i" is invalid/ },
    { text: "ci:sms:send:abc", message: /hash must be 64 hexadecimal digits/ },
    { text: `ci:sms:sned:${HASH}`, message: /unknown scope "sms:sned"; use integrations:read, integrations:write, sms:send/ },
    { text: `ci::${HASH}`, message: /unknown scope ""/ },
    { text: `ci:sms:send:${HASH},ci:sms:send:${"b".repeat(64)}`, message: /entry 2 \("ci"\) repeats the name of "ci"/ },
    { text: `ci:sms:send:${HASH},cd:sms:send:${HASH}`, message: /entry 2 \("cd"\) repeats the key hash of "ci"/ },
  ])("rejects $message", ({ text, message }) => {
    expect(() => parseApiKeys(text, "API_KEYS")).toThrow(message);
  });

  test("scopes accept + and , and drop repeats", () => {
    expect(parseScopes("sms:send+integrations:read,sms:send")).toEqual(["sms:send", "integrations:read"]);
  });
});

describe("create-api-key", () => {
  test("entry holds the hash of the printed key", () => {
    const { key, entry } = createApiKey("ci", "sms:send+integrations:read");

    expect(key).toMatch(/^smsk_[A-Za-z0-9_-]{43}$/);
    expect(entry).toBe(`ci:sms:send+integrations:read:${hashApiKey(key).toString("hex")}`);
    const [parsed] = parseApiKeys(entry, "API_KEYS");
    expect(parsed?.hash.equals(hashApiKey(key))).toBe(true);
  });

  test("keys differ on every run", () => {
    expect(createApiKey("a", "sms:send").key).not.toBe(createApiKey("a", "sms:send").key);
  });

  test.each([
    { argv: [], message: /--name and --scopes are required/ },
    { argv: ["--name", "ci"], message: /--name and --scopes are required/ },
    { argv: ["--name", "ci", "--scopes", "sms:all"], message: /unknown scope "sms:all"/ },
    { argv: ["--name", "c/i", "--scopes", "sms:send"], message: /--name: name "c\/i" is invalid/ },
    { argv: ["--name"], message: /--name needs a value/ },
    { argv: ["--nmae", "ci"], message: /Unknown argument "--nmae"/ },
  ])("rejects $argv", ({ argv, message }) => {
    let error = "";
    const code = runCreateApiKeyCommand(argv, () => undefined, (text) => (error += text));

    expect(code).toBe(2);
    expect(error).toMatch(message);
    expect(error).toContain("Usage: npm run create-api-key");
  });

  test("npm script prints a key and its entry", async () => {
    const { stdout } = await run(TSX, ["src/tools/create-api-key.ts", "--name=deploy", "--scopes=integrations:write"], { timeout: 60_000 });

    const { key, entry } = parseCreateApiKeyOutput(stdout);
    expect(entry).toBe(`deploy:integrations:write:${hashApiKey(key).toString("hex")}`);
  });
});

describe("loadApiKeys", () => {
  const tempDirs: string[] = [];

  afterEach(async () => {
    for (const dir of tempDirs.splice(0)) {
      await rm(dir, { recursive: true, force: true });
    }
  });

  async function fileWith(text: string): Promise<string> {
    const dir = await mkdtemp(path.join(tmpdir(), "smsgateway-api-keys-"));
    tempDirs.push(dir);
    const file = path.join(dir, "api-keys");
    await writeFile(file, text);
    return file;
  }

  test("no setting means no keys", async () => {
    expect(await loadApiKeys({ apiKeys: "", apiKeysFile: "", names: environmentNames() })).toEqual({ keys: [], source: "" });
  });

  test("reads the file", async () => {
    const file = await fileWith(`# callers\nci:sms:send:${HASH}\n`);

    const loaded = await loadApiKeys({ apiKeys: "", apiKeysFile: file, names: environmentNames() });

    expect(loaded.keys.map((key) => key.name)).toEqual(["ci"]);
    expect(loaded.source).toBe(file);
  });

  test.each([
    { name: "both settings", text: undefined, apiKeys: `ci:sms:send:${HASH}`, message: /both set/ },
    { name: "empty file", text: "# none yet\n", apiKeys: "", message: /lists no API key/ },
    { name: "bad entry", text: "ci:sms:send:zz\n", apiKeys: "", message: /API_KEYS_FILE .*: entry 1 \("ci"\): the hash/ },
  ])("$name is a ConfigError", async ({ text, apiKeys, message }) => {
    const file = text === undefined ? "/tmp/unused" : await fileWith(text);

    const attempt = loadApiKeys({ apiKeys, apiKeysFile: file, names: environmentNames() });

    await expect(attempt).rejects.toBeInstanceOf(ConfigError);
    await expect(attempt).rejects.toThrow(message);
  });

  test.each([" , ", ",", " "])("API_KEYS %j without keys is a ConfigError", async (apiKeys) => {
    const attempt = loadApiKeys({ apiKeys, apiKeysFile: "", names: environmentNames() });

    await expect(attempt).rejects.toBeInstanceOf(ConfigError);
    await expect(attempt).rejects.toThrow("API_KEYS is set but lists no API key");
  });

  test("missing file is a ConfigError", async () => {
    await expect(loadApiKeys({ apiKeys: "", apiKeysFile: "/nonexistent/api-keys", names: environmentNames() })).rejects.toThrow(
      "API_KEYS_FILE /nonexistent/api-keys cannot be read: not found (ENOENT)",
    );
  });
});

describe("isLoopbackHost", () => {
  test.each(["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "LOCALHOST", "::ffff:127.0.0.1"])("%s is loopback", (host) => {
    expect(isLoopbackHost(host)).toBe(true);
  });

  test.each(["0.0.0.0", "::", "10.1.2.3", "192.168.1.20", "::ffff:10.0.0.1", "fe80::1", "example.com", ""])(
    "%j is not loopback",
    (host) => {
      expect(isLoopbackHost(host)).toBe(false);
    },
  );
});

describe("procedure scopes", () => {
  test("every API method has a scope", () => {
    const procedures = [IntegrationService, SmsService].flatMap((service) =>
      service.methods.map((method) => `${service.typeName}/${method.name}`),
    );

    for (const procedure of procedures) {
      expect(PROCEDURE_SCOPES[procedure], procedure).toBeDefined();
    }
    expect(Object.keys(PROCEDURE_SCOPES).sort()).toEqual([...procedures].sort());
  });

  test("public list holds health and reflection only", () => {
    expect([...PUBLIC_PROCEDURES].sort()).toEqual([
      "grpc.health.v1.Health/Check",
      "grpc.health.v1.Health/Watch",
      "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
      "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    ]);
  });
});
