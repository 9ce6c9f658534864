import { randomBytes } from "node:crypto";

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
