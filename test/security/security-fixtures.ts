import { randomBytes } from "node:crypto";

import { ConnectError } from "@connectrpc/connect";
import { expect } from "vitest";

import { runCreateApiKeyCommand } from "../../src/security/create-api-key-command.js";
import { parseEncryptionKeys, type EncryptionKeyRing } from "../../src/security/encryption-key-ring.js";
import { SecretCipher } from "../../src/security/secret-cipher.js";

/** Returns a `keyId:base64key` entry with a fresh random key. */
export function keyEntry(id: string): string {
  return `${id}:${randomBytes(32).toString("base64")}`;
}

/** Returns a key ring of the given entries, the last one current. */
export function ring(...entries: string[]): EncryptionKeyRing {
  return parseEncryptionKeys(entries.join(","), "test keys");
}

/** Returns a cipher over the given entries. */
export function cipherOf(...entries: string[]): SecretCipher {
  return new SecretCipher(ring(...entries));
}

/** Runs create-api-key in this process and returns the key and the entry it printed. */
export function createApiKey(name: string, scopes: string): { key: string; entry: string } {
  let printed = "";
  const code = runCreateApiKeyCommand(["--name", name, "--scopes", scopes], (text) => (printed += text), () => undefined);
  expect(code).toBe(0);
  return parseCreateApiKeyOutput(printed);
}

/** Reads the key and the configuration entry from the output of create-api-key. */
export function parseCreateApiKeyOutput(output: string): { key: string; entry: string } {
  const indented = output.split("\n").filter((line) => line.startsWith("  ")).map((line) => line.trim());
  const key = indented.find((line) => line.startsWith("smsk_")) ?? "";
  const entry = indented.find((line) => !line.startsWith("smsk_") && !line.startsWith("--")) ?? "";
  return { key, entry };
}

/** Awaits a call that must fail and returns its error as a ConnectError. */
export async function rejection(promise: Promise<unknown>): Promise<ConnectError> {
  try {
    await promise;
  } catch (error) {
    return ConnectError.from(error);
  }
  throw new Error("expected the call to fail");
}
