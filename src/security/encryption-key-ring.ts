import { splitConfigEntries } from "./config-entries.js";

/** Length of an AES-256 key, in bytes. */
export const ENCRYPTION_KEY_BYTES = 32;

/** 1 to 32 characters of letters, digits, `.`, `_` and `-`: no `:`, which separates the parts of a ciphertext. */
const KEY_ID_PATTERN = /^[A-Za-z0-9._-]{1,32}$/;

/** Standard or URL-safe base64, with or without padding. */
const BASE64_PATTERN = /^[A-Za-z0-9+/_-]+={0,2}$/;

/** One AES-256-GCM key and the id stored beside each ciphertext it makes. */
export interface EncryptionKey {
  readonly id: string;
  readonly key: Buffer;
}

/**
 * The encryption keys the service can decrypt with, and the one it encrypts
 * with: the last configured. Older keys stay so that rows written before a
 * rotation still read, until the re-encrypt command has rewritten them.
 */
export class EncryptionKeyRing {
  readonly #keys: ReadonlyMap<string, Buffer>;
  /** The newest key, which encrypts every write. */
  readonly current: EncryptionKey;

  /** @throws Error when `keys` is empty or repeats an id. */
  constructor(keys: readonly EncryptionKey[]) {
    const byId = new Map<string, Buffer>();
    for (const { id, key } of keys) {
      if (byId.has(id)) {
        throw new Error(`key id "${id}" appears twice`);
      }
      byId.set(id, key);
    }
    const newest = keys.at(-1);
    if (newest === undefined) {
      throw new Error("no encryption key");
    }
    this.#keys = byId;
    this.current = newest;
  }

  /** Returns the key with this id, or undefined when the ring does not contain it. */
  key(id: string): Buffer | undefined {
    return this.#keys.get(id);
  }

  /** Ids of every key, in configuration order. */
  get ids(): string[] {
    return [...this.#keys.keys()];
  }
}

/**
 * Parses `keyId:base64key` entries separated by commas or line breaks; lines
 * starting with `#` are comments.
 *
 * @param source names the setting or file in error messages, for example
 *   `ENCRYPTION_KEYS`. Messages never contain key material.
 * @throws Error naming the entry and what is wrong with it.
 */
export function parseEncryptionKeys(text: string, source: string): EncryptionKeyRing {
  const keys: EncryptionKey[] = [];
  const entries = splitConfigEntries(text);

  for (const [index, entry] of entries.entries()) {
    const where = `${source}: entry ${index + 1}`;
    const colon = entry.indexOf(":");
    if (colon === -1) {
      throw new Error(`${where} has no ":"; write each key as keyId:base64key`);
    }

    const id = entry.slice(0, colon).trim();
    const encoded = entry.slice(colon + 1).trim();
    if (!KEY_ID_PATTERN.test(id)) {
      throw new Error(`${where}: key id "${id.slice(0, 40)}" is invalid; use 1 to 32 letters, digits, ".", "_" or "-"`);
    }
    const key = BASE64_PATTERN.test(encoded) ? Buffer.from(encoded, "base64") : undefined;
    if (key?.length !== ENCRYPTION_KEY_BYTES) {
      throw new Error(
        `${where} (key id "${id}"): the key must be ${ENCRYPTION_KEY_BYTES} bytes in base64 ` +
          "(generate one with: openssl rand -base64 32)",
      );
    }
    keys.push({ id, key });
  }

  if (keys.length === 0) {
    throw new Error(`${source} contains no key; write keyId:base64key entries`);
  }
  try {
    return new EncryptionKeyRing(keys);
  } catch (error) {
    throw new Error(`${source}: ${(error as Error).message}; give each key its own id`);
  }
}
