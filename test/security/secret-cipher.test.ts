import { describe, expect, test } from "vitest";

import { SecretDecryptionError, type SecretBinding } from "../../src/security/secret-cipher.js";
import { cipherOf, keyEntry } from "./security-fixtures.js";

const BINDING: SecretBinding = { integrationId: "acme", field: "api_key" };
const PLAINTEXT = "live_key_0123456789-ü-🔑";

/** Returns the error a decryption throws, failing the test when it succeeds. */
function decryptionError(run: () => unknown): SecretDecryptionError {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(SecretDecryptionError);
    return error as SecretDecryptionError;
  }
  throw new Error("expected decryption to fail");
}

/** Flips one bit of the decoded payload at `index` and encodes it again. */
function flipPayloadBit(stored: string, index: number): string {
  const [version, keyId, encoded] = stored.split(":");
  const payload = Buffer.from(encoded ?? "", "base64url");
  payload[index < 0 ? payload.length + index : index]! ^= 0x01;
  return `${version}:${keyId}:${payload.toString("base64url")}`;
}

describe("SecretCipher", () => {
  const key = keyEntry("k1");

  test("round trip", () => {
    const cipher = cipherOf(key);

    const stored = cipher.encrypt(PLAINTEXT, BINDING);

    expect(stored).toMatch(/^v1:k1:[A-Za-z0-9_-]+$/);
    expect(stored).not.toContain("live_key");
    expect(cipher.decrypt(stored, BINDING)).toBe(PLAINTEXT);
  });

  test("fresh IV on every encryption", () => {
    const cipher = cipherOf(key);

    expect(cipher.encrypt(PLAINTEXT, BINDING)).not.toBe(cipher.encrypt(PLAINTEXT, BINDING));
  });

  test("empty secret stays empty", () => {
    const cipher = cipherOf(key);

    expect(cipher.encrypt("", BINDING)).toBe("");
    expect(cipher.decrypt("", BINDING)).toBe("");
  });

  test("legacy plain text reads unchanged", () => {
    expect(cipherOf(key).decrypt("plain-legacy-key", BINDING)).toBe("plain-legacy-key");
  });

  test.each([
    { part: "IV", index: 0 },
    { part: "ciphertext", index: 13 },
    { part: "tag", index: -1 },
  ])("tampered $part fails authentication", ({ index }) => {
    const cipher = cipherOf(key);
    const tampered = flipPayloadBit(cipher.encrypt(PLAINTEXT, BINDING), index);

    const error = decryptionError(() => cipher.decrypt(tampered, BINDING));

    expect(error.failure).toBe("authentication_failed");
    expect(error.keyId).toBe("k1");
    expect(error.message).not.toContain(PLAINTEXT);
  });

  test("other integration id fails authentication", () => {
    const cipher = cipherOf(key);
    const stored = cipher.encrypt(PLAINTEXT, BINDING);

    const error = decryptionError(() => cipher.decrypt(stored, { integrationId: "other", field: "api_key" }));

    expect(error.failure).toBe("authentication_failed");
    expect(error.binding.integrationId).toBe("other");
  });

  test("other column fails authentication", () => {
    const cipher = cipherOf(key);
    const stored = cipher.encrypt(PLAINTEXT, BINDING);

    const error = decryptionError(() => cipher.decrypt(stored, { integrationId: "acme", field: "secret_key" }));

    expect(error.failure).toBe("authentication_failed");
  });

  test("relabelled key id fails authentication", () => {
    const cipher = cipherOf(keyEntry("k0"), key);
    const stored = cipher.encrypt(PLAINTEXT, BINDING);

    const error = decryptionError(() => cipher.decrypt(stored.replace("v1:k1:", "v1:k0:"), BINDING));

    expect(error.failure).toBe("authentication_failed");
    expect(error.keyId).toBe("k0");
  });

  test("unknown key id", () => {
    const stored = cipherOf(keyEntry("gone")).encrypt(PLAINTEXT, BINDING);

    const error = decryptionError(() => cipherOf(key).decrypt(stored, BINDING));

    expect(error.failure).toBe("unknown_key");
    expect(error.keyId).toBe("gone");
  });

  test("same id with another key fails authentication", () => {
    const stored = cipherOf(keyEntry("k1")).encrypt(PLAINTEXT, BINDING);

    expect(decryptionError(() => cipherOf(key).decrypt(stored, BINDING)).failure).toBe("authentication_failed");
  });

  test.each(["v1:", "v1:k1", "v1:k1:", "v1:k1:c2hvcnQ", "v1:k1:not base64!"])("malformed %j", (stored) => {
    const error = decryptionError(() => cipherOf(key).decrypt(stored, BINDING));

    expect(error.failure).toBe("malformed");
  });

  test("rotation: old ciphertext still decrypts, writes use the newest key", () => {
    const old = keyEntry("2025");
    const stored = cipherOf(old).encrypt(PLAINTEXT, BINDING);
    const rotated = cipherOf(old, keyEntry("2026"));

    expect(rotated.decrypt(stored, BINDING)).toBe(PLAINTEXT);
    expect(rotated.encrypt(PLAINTEXT, BINDING)).toMatch(/^v1:2026:/);
    expect(rotated.isCurrent(stored)).toBe(false);
    expect(rotated.isCurrent(rotated.encrypt(PLAINTEXT, BINDING))).toBe(true);
    expect(rotated.isCurrent("")).toBe(true);
    expect(rotated.isCurrent("legacy")).toBe(false);
  });
});
