import { randomBytes } from "node:crypto";
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";

import { afterEach, describe, expect, test } from "vitest";

import { ConfigError } from "../../src/config/load-config.js";
import { environmentNames } from "../../src/config/settings.js";
import { parseEncryptionKeys } from "../../src/security/encryption-key-ring.js";
import { loadEncryptionKeys, type EncryptionKeySettings } from "../../src/security/encryption-key-source.js";
import { capturingLogger, silentLogger } from "../store/integration-fixtures.js";
import { keyEntry } from "./security-fixtures.js";

const KEY_MATERIAL = randomBytes(32).toString("base64");

describe("parseEncryptionKeys", () => {
  test("last entry is current", () => {
    const ring = parseEncryptionKeys(` a:${KEY_MATERIAL} ,\n${keyEntry("b")}\n`, "ENCRYPTION_KEYS");

    expect(ring.ids).toEqual(["a", "b"]);
    expect(ring.current.id).toBe("b");
    expect(ring.key("a")).toEqual(Buffer.from(KEY_MATERIAL, "base64"));
    expect(ring.key("c")).toBeUndefined();
  });

  test("accepts base64url and comments", () => {
    const urlSafe = randomBytes(32).toString("base64url");
    const ring = parseEncryptionKeys(`# a comment, with: colons\nk.1_x-y:${urlSafe}`, "file");

    expect(ring.current.id).toBe("k.1_x-y");
  });

  test.each([
    { text: "", message: /contains no key/ },
    { text: "# only a comment", message: /contains no key/ },
    { text: KEY_MATERIAL, message: /entry 1 has no ":"/ },
    { text: `bad id:${KEY_MATERIAL}`, message: /key id "bad id" is invalid/ },
    { text: `:${KEY_MATERIAL}`, message: /key id "" is invalid/ },
    { text: `k:${randomBytes(16).toString("base64")}`, message: /must be 32 bytes/ },
    { text: `k:${KEY_MATERIAL.slice(0, -4)}!!!!`, message: /must be 32 bytes/ },
    { text: `k:${KEY_MATERIAL},k:${randomBytes(32).toString("base64")}`, message: /key id "k" appears twice/ },
  ])("rejects $message", ({ text, message }) => {
    const parse = () => parseEncryptionKeys(text, "ENCRYPTION_KEYS");

    expect(parse).toThrow(message);
    expect(parse).toThrow(/^ENCRYPTION_KEYS/);
  });

  test("error messages leave the key out", () => {
    const wrongLength = randomBytes(31).toString("base64");
    for (const text of [`k:${wrongLength}`, `bad id:${KEY_MATERIAL}`, `k:${KEY_MATERIAL},k:${KEY_MATERIAL}`]) {
      try {
        parseEncryptionKeys(text, "ENCRYPTION_KEYS");
        throw new Error("expected a parse error");
      } catch (error) {
        expect((error as Error).message).not.toContain(KEY_MATERIAL.slice(0, 20));
        expect((error as Error).message).not.toContain(wrongLength.slice(0, 20));
      }
    }
  });
});

describe("loadEncryptionKeys", () => {
  const tempDirs: string[] = [];

  async function tempDir(): Promise<string> {
    const dir = await mkdtemp(path.join(tmpdir(), "smsgateway-keys-"));
    tempDirs.push(dir);
    return dir;
  }

  function settings(overrides: Partial<EncryptionKeySettings>): EncryptionKeySettings {
    return { encryptionKeys: "", encryptionKeysFile: "", databaseUrl: "", dataDir: "/nonexistent/unused", names: environmentNames(), ...overrides };
  }

  afterEach(async () => {
    for (const dir of tempDirs.splice(0)) {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("reads ENCRYPTION_KEYS", async () => {
    const loaded = await loadEncryptionKeys(settings({ encryptionKeys: `${keyEntry("a")},${keyEntry("b")}` }), silentLogger());

    expect(loaded.ring.current.id).toBe("b");
    expect(loaded.source).toBe("ENCRYPTION_KEYS");
  });

  test("reads ENCRYPTION_KEYS_FILE", async () => {
    const file = path.join(await tempDir(), "keys");
    await writeFile(file, `# rotated yearly\n${keyEntry("2025")}\n${keyEntry("2026")}\n`, { mode: 0o600 });
    const { logger, lines } = capturingLogger();

    const loaded = await loadEncryptionKeys(settings({ encryptionKeysFile: file }), logger);

    expect(loaded.ring.ids).toEqual(["2025", "2026"]);
    expect(loaded.source).toBe(file);
    expect(lines.join("")).not.toContain("accessible to other users");
  });

  test("warns about a key file others can read", async () => {
    const file = path.join(await tempDir(), "keys");
    await writeFile(file, keyEntry("k"));
    await chmod(file, 0o644);
    const { logger, lines } = capturingLogger();

    await loadEncryptionKeys(settings({ encryptionKeysFile: file }), logger);

    expect(lines.join("")).toContain("accessible to other users");
  });

  test("PostgreSQL without a key is a ConfigError", async () => {
    const dataDir = path.join(await tempDir(), "data");
    const attempt = loadEncryptionKeys(settings({ databaseUrl: "postgres://postgres@127.0.0.1:5432/test", dataDir }), silentLogger());

    await expect(attempt).rejects.toBeInstanceOf(ConfigError);
    await expect(attempt).rejects.toThrow(/No encryption key is configured for the PostgreSQL store.*ENCRYPTION_KEYS/);
    await expect(stat(dataDir)).rejects.toMatchObject({ code: "ENOENT" });
  });

  test.each([
    { name: "both settings", overrides: { encryptionKeys: keyEntry("a"), encryptionKeysFile: "/tmp/x" }, message: /both set/ },
    { name: "missing file", overrides: { encryptionKeysFile: "/nonexistent/keys" }, message: /^ENCRYPTION_KEYS_FILE \/nonexistent\/keys cannot be read: not found \(ENOENT\)/ },
    { name: "short key", overrides: { encryptionKeys: `k:${randomBytes(16).toString("base64")}` }, message: /must be 32 bytes/ },
  ])("$name is a ConfigError", async ({ overrides, message }) => {
    const attempt = loadEncryptionKeys(settings(overrides), silentLogger());

    await expect(attempt).rejects.toBeInstanceOf(ConfigError);
    await expect(attempt).rejects.toThrow(message);
  });

  test("SQLite without a key creates an owner-only key file and reuses it", async () => {
    const dataDir = path.join(await tempDir(), "nested", "data");
    const first = capturingLogger();

    const created = await loadEncryptionKeys(settings({ dataDir }), first.logger);
    const file = path.join(dataDir, "encryption-keys");

    expect(created.source).toBe(file);
    expect((await stat(dataDir)).mode & 0o777).toBe(0o700);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const warning = first.lines.map((line) => JSON.parse(line) as Record<string, unknown>).find((line) => line.level === 40);
    expect(warning).toMatchObject({ file, msg: expect.stringContaining("created an encryption key file") });

    const second = capturingLogger();
    const reused = await loadEncryptionKeys(settings({ dataDir }), second.logger);

    expect(reused.ring.current.id).toBe(created.ring.current.id);
    expect(reused.ring.current.key.equals(created.ring.current.key)).toBe(true);
    expect(second.lines.join("")).toContain(file);
    expect(second.lines.join("")).toContain("encrypting stored gateway secrets with the key file in DATA_DIR");
    const logged = [...first.lines, ...second.lines].join("");
    expect(logged).not.toContain(created.ring.current.key.toString("base64"));
  });

  test("names the generated keys that are not configured", async () => {
    const dataDir = await tempDir();
    const generated = await loadEncryptionKeys(settings({ dataDir }), silentLogger());
    const generatedEntry = `${generated.ring.current.id}:${generated.ring.current.key.toString("base64")}`;
    const left = capturingLogger();

    const leftOut = await loadEncryptionKeys(settings({ dataDir, encryptionKeys: keyEntry("fresh") }), left.logger);
    const withGeneratedKey = await loadEncryptionKeys(settings({ dataDir, encryptionKeys: `${generatedEntry},${keyEntry("fresh")}` }), silentLogger());

    expect(leftOut.generatedKeysLeftOut).toEqual({ file: path.join(dataDir, "encryption-keys"), keyIds: [generated.ring.current.id] });
    expect(withGeneratedKey.generatedKeysLeftOut).toBeUndefined();
    // Whether stored secrets use the left-out keys is known only once the store is open, so nothing is logged yet.
    expect(left.lines).toEqual([]);
  });

  test("a generated key gets an id of its own", async () => {
    const first = await loadEncryptionKeys(settings({ dataDir: await tempDir() }), silentLogger());
    const second = await loadEncryptionKeys(settings({ dataDir: await tempDir() }), silentLogger());

    expect(first.ring.current.id).toMatch(/^local-\d{8}-[0-9a-f]{6}$/);
    expect(second.ring.current.id).not.toBe(first.ring.current.id);
  });

  test("names where the keys were configured", async () => {
    const dataDir = await tempDir();
    const file = path.join(dataDir, "keys");
    await writeFile(file, keyEntry("k"), { mode: 0o600 });
    const names = { ...environmentNames(), encryptionKeys: "--encryption-keys" };

    const fromFlag = await loadEncryptionKeys(settings({ encryptionKeys: keyEntry("k"), names }), silentLogger());
    const fromFile = await loadEncryptionKeys(settings({ encryptionKeysFile: file }), silentLogger());
    const generated = await loadEncryptionKeys(settings({ dataDir }), silentLogger());

    expect(fromFlag.setting).toBe("--encryption-keys");
    expect(fromFile.setting).toBe(`ENCRYPTION_KEYS_FILE ${file}`);
    expect(generated.setting).toBe(`the key file generated in DATA_DIR (${path.join(dataDir, "encryption-keys")})`);
  });

  test("concurrent first starts share one key", async () => {
    const dataDir = await tempDir();

    const loaded = await Promise.all(Array.from({ length: 8 }, () => loadEncryptionKeys(settings({ dataDir }), silentLogger())));

    const keys = new Set(loaded.map((entry) => entry.ring.current.key.toString("base64")));
    expect(keys.size).toBe(1);
    const text = await readFile(path.join(dataDir, "encryption-keys"), "utf8");
    expect(text.match(/^local-\d{8}-[0-9a-f]{6}:/gm)).toHaveLength(1);
  });
});
