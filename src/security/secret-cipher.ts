import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";

import type { EncryptionKeyRing } from "./encryption-key-ring.js";

/** Prefix of every value this module encrypts; the version names the format below. */
export const CIPHERTEXT_PREFIX = "v1:";

const ALGORITHM = "aes-256-gcm";
/** GCM's recommended nonce length, in bytes. */
const IV_BYTES = 12;
const TAG_BYTES = 16;

/** The stored columns that contain secrets. */
export type SecretField = "api_key" | "secret_key";

/**
 * Location of a secret: its integration and column. It is bound to the ciphertext as additional
 * authenticated data, so a ciphertext copied to another row or column fails
 * to decrypt instead of sending one integration's key to another gateway.
 */
export interface SecretBinding {
  integrationId: string;
  field: SecretField;
}

/**
 * Reason a stored secret could not be decrypted. `unknown_key`: no
 * configured key has its id. `authentication_failed`: the key is there, but
 * the ciphertext, its key id or its row was altered, or the key under that
 * id changed. `malformed`: the value is not in the `v1:` format.
 */
export type DecryptionFailure = "unknown_key" | "authentication_failed" | "malformed";

/** A stored secret that the configured keys cannot decrypt. Never carries the value. */
export class SecretDecryptionError extends Error {
  override readonly name = "SecretDecryptionError";

  constructor(
    readonly binding: SecretBinding,
    /** Key id written in the ciphertext; empty when the value is malformed before it. */
    readonly keyId: string,
    readonly failure: DecryptionFailure,
  ) {
    super(`stored ${binding.field} of integration "${binding.integrationId}" cannot be decrypted (${failure}, key id "${keyId}")`);
  }
}

/**
 * Encrypts and decrypts stored secrets with AES-256-GCM.
 *
 * A stored value reads `v1:<keyId>:<base64url(iv | ciphertext | tag)>`. A
 * value without the `v1:` prefix is legacy plain text from before
 * encryption, and reads as it is until the re-encrypt command rewrites it.
 * The empty string means "no secret" and is stored as it is.
 */
export class SecretCipher {
  constructor(private readonly keys: EncryptionKeyRing) {}

  /** Id of the key that {@link encrypt} uses. */
  get currentKeyId(): string {
    return this.keys.current.id;
  }

  /** Encrypts a secret under the newest key with a fresh random IV. */
  encrypt(plaintext: string, binding: SecretBinding): string {
    if (plaintext === "") {
      return "";
    }

    const { id, key } = this.keys.current;
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv(ALGORITHM, key, iv, { authTagLength: TAG_BYTES });
    cipher.setAAD(additionalData(id, binding));
    const encrypted = Buffer.concat([cipher.update(plaintext, "utf8"), cipher.final()]);
    const payload = Buffer.concat([iv, encrypted, cipher.getAuthTag()]);
    return `${CIPHERTEXT_PREFIX}${id}:${payload.toString("base64url")}`;
  }

  /**
   * Decrypts a stored value; legacy plain text and the empty string come back unchanged.
   *
   * @throws SecretDecryptionError when the value has the `v1:` prefix but no
   *   configured key decrypts it for this binding.
   */
  decrypt(stored: string, binding: SecretBinding): string {
    if (!isEncrypted(stored)) {
      return stored;
    }

    const rest = stored.slice(CIPHERTEXT_PREFIX.length);
    const colon = rest.indexOf(":");
    if (colon === -1) {
      throw new SecretDecryptionError(binding, "", "malformed");
    }
    const keyId = rest.slice(0, colon);
    const encoded = rest.slice(colon + 1);
    const key = this.keys.key(keyId);
    if (key === undefined) {
      throw new SecretDecryptionError(binding, keyId, "unknown_key");
    }

    const payload = /^[A-Za-z0-9_-]*$/.test(encoded) ? Buffer.from(encoded, "base64url") : Buffer.alloc(0);
    if (payload.length < IV_BYTES + TAG_BYTES) {
      throw new SecretDecryptionError(binding, keyId, "malformed");
    }
    const iv = payload.subarray(0, IV_BYTES);
    const tag = payload.subarray(payload.length - TAG_BYTES);
    const encrypted = payload.subarray(IV_BYTES, payload.length - TAG_BYTES);
    try {
      const decipher = createDecipheriv(ALGORITHM, key, iv, { authTagLength: TAG_BYTES });
      decipher.setAAD(additionalData(keyId, binding));
      decipher.setAuthTag(tag);
      return Buffer.concat([decipher.update(encrypted), decipher.final()]).toString("utf8");
    } catch {
      throw new SecretDecryptionError(binding, keyId, "authentication_failed");
    }
  }

  /**
   * Returns whether a stored value is already in its final form: empty, or
   * encrypted under the newest key. Anything else is rewritten by the
   * re-encrypt command.
   */
  isCurrent(stored: string): boolean {
    return stored === "" || stored.startsWith(`${CIPHERTEXT_PREFIX}${this.currentKeyId}:`);
  }
}

/**
 * Returns whether a stored value is a ciphertext rather than legacy plain text.
 *
 * NOTE: a legacy plain-text secret that starts with `v1:` is taken for a
 * ciphertext, so it fails to decrypt. Set such an integration's secret
 * again through the API.
 */
export function isEncrypted(stored: string): boolean {
  return stored.startsWith(CIPHERTEXT_PREFIX);
}

/**
 * Builds the additional authenticated data: format version, key id,
 * integration id and column, as a JSON array so that no two bindings share
 * an encoding.
 */
function additionalData(keyId: string, binding: SecretBinding): Buffer {
  return Buffer.from(JSON.stringify(["smsgateway", "v1", keyId, binding.integrationId, binding.field]), "utf8");
}
