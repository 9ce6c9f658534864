import type { Logger } from "pino";

import { ConfigError } from "../config/load-config.js";
import type { IntegrationSecrets, KeyCheckStore } from "../store/key-check-store.js";
import { EncryptionKeyRing, type EncryptionKey } from "./encryption-key-ring.js";
import type { LoadedEncryptionKeys } from "./encryption-key-source.js";
import { CIPHERTEXT_PREFIX, SecretCipher, SecretDecryptionError, type SecretBinding, type SecretField } from "./secret-cipher.js";
import { reportStoredKeyUsage } from "./stored-key-usage.js";

/** The fixed text that every check value encrypts. It is no secret: the key is what it tests. */
const CHECK_PLAINTEXT = "smsgateway encryption key check";

/**
 * Binding of every check value. No integration created through the API
 * can have this id (ids match `[a-z0-9][a-z0-9_-]*`), so a check value
 * does not decrypt in an integration's row.
 */
const CHECK_BINDING: SecretBinding = { integrationId: "(encryption key check)", field: "api_key" };

/**
 * Integrations whose secrets are tried when a key id has stored secrets but
 * no check value yet, as after an upgrade from a version without the checks.
 */
const SECRETS_TRIED = 10;

const SECRET_COLUMNS: readonly { field: SecretField; value: (secrets: IntegrationSecrets) => string }[] = [
  { field: "api_key", value: (secrets) => secrets.apiKey },
  { field: "secret_key", value: (secrets) => secrets.secretKey },
];

/**
 * Checks the configured encryption keys against the store, then logs the
 * key ids that stored secrets use but the configuration leaves out (see
 * {@link reportStoredKeyUsage}). The service runs it at start-up and
 * `npm run reencrypt` before it rewrites anything, both before they write
 * a secret.
 *
 * @param storage the database, as logs name it, for the error messages.
 * @throws ConfigError when a configured key is not the key first used under its id.
 * @throws StorageError when a query fails.
 */
export async function checkStoredEncryptionKeys(
  store: KeyCheckStore,
  keys: LoadedEncryptionKeys,
  storage: string,
  logger: Logger,
): Promise<void> {
  const usage = await store.countIntegrationsByKeyId();
  const recordedNow = await checkEncryptionKeys(store, keys, usage, storage);
  if (recordedNow.length > 0) {
    // The first process with a key id decides its key, so this line shows which process did.
    logger.info(
      { keyIds: recordedNow, source: keys.setting },
      "recorded the check values of new encryption key ids; later processes must use the same keys under these ids",
    );
  }
  reportStoredKeyUsage(usage, keys, logger);
}

/**
 * Checks that each configured key is the key first used under its id in
 * this store. The first process that starts with a key id stores a check
 * value, a fixed text encrypted under its key, and every later process
 * must decrypt it with the key it has under that id. So a mistyped or
 * wrong key stops the process before it writes a secret that the other
 * processes cannot decrypt.
 *
 * A key id without a check value gets one. When secrets are already
 * stored under that id, the key must first decrypt most of those it tries,
 * so that after an upgrade a wrong key cannot be the one recorded. The check
 * value is inserted only when the id still has none, and then read back,
 * so of two processes that start at once with different keys under one
 * id, the one whose row was not kept fails.
 *
 * @param usage integrations per key id of their stored secrets.
 * @returns the key ids that had no check value when the check began, whose values are now recorded.
 * @throws ConfigError naming the key id, where it was configured, and the fix.
 */
export async function checkEncryptionKeys(
  store: KeyCheckStore,
  keys: LoadedEncryptionKeys,
  usage: ReadonlyMap<string, number>,
  storage: string,
): Promise<string[]> {
  const configured = keys.ring.ids.map((id) => ({ id, key: keys.ring.key(id)! }));
  let recorded = await store.readChecks(keys.ring.ids);
  assertChecksDecrypt(configured.filter(({ id }) => recorded.has(id)), recorded, keys, usage, storage);

  const unrecorded = configured.filter(({ id }) => !recorded.has(id));
  if (unrecorded.length === 0) {
    return [];
  }
  for (const key of unrecorded) {
    if ((usage.get(key.id) ?? 0) > 0) {
      await assertDecryptsStoredSecrets(store, key, keys, storage);
    }
  }
  for (const key of unrecorded) {
    await store.insertCheck(key.id, encryptCheckValue(key));
  }

  // Another process may have inserted its own value first.
  recorded = await store.readChecks(unrecorded.map(({ id }) => id));
  for (const { id } of unrecorded) {
    if (!recorded.has(id)) {
      throw new Error(`the check value of encryption key id "${id}" is missing right after it was inserted; start again`);
    }
  }
  assertChecksDecrypt(unrecorded, recorded, keys, usage, storage);
  return unrecorded.map(({ id }) => id);
}

/** Returns a new check value of one key, encrypted with a fresh random IV. */
export function encryptCheckValue(key: EncryptionKey): string {
  return cipherOf(key).encrypt(CHECK_PLAINTEXT, CHECK_BINDING);
}

/** Returns whether `key` decrypts a stored check value to the fixed text. */
export function decryptsCheckValue(key: EncryptionKey, checkValue: string): boolean {
  try {
    return cipherOf(key).decrypt(checkValue, CHECK_BINDING) === CHECK_PLAINTEXT;
  } catch (error) {
    if (error instanceof SecretDecryptionError) {
      return false;
    }
    throw error;
  }
}

function cipherOf(key: EncryptionKey): SecretCipher {
  return new SecretCipher(new EncryptionKeyRing([key]));
}

/**
 * @throws ConfigError naming every key of `keys` whose recorded check value
 *   it does not decrypt. When no secret is stored under those ids, the
 *   message also states how to record the right key again.
 */
function assertChecksDecrypt(
  checked: readonly EncryptionKey[],
  recorded: ReadonlyMap<string, string>,
  keys: LoadedEncryptionKeys,
  usage: ReadonlyMap<string, number>,
  storage: string,
): void {
  const wrong = checked.filter((key) => !decryptsCheckValue(key, recorded.get(key.id) ?? "")).map(({ id }) => id);
  const [first] = wrong;
  if (first === undefined) {
    return;
  }

  const named = wrong.map((id) => `"${id}"`).join(", ");
  const single = wrong.length === 1;
  const subject = single
    ? `key id ${named} in ${keys.setting} is not the key that was first used under this id`
    : `key ids ${named} in ${keys.setting} are not the keys that were first used under these ids`;
  // Without stored secrets under the ids, deleting the recorded check value and recording it again loses no data.
  const unused = wrong.every((id) => (usage.get(id) ?? 0) === 0);
  const recovery = unused
    ? ` No secret is stored under ${single ? "this id" : "these ids"} yet, so if ${single ? "this key is" : "these keys are"} the ` +
      "right one, the first process that started with it had another key (its log line " +
      '"recorded the check values of new encryption key ids" names the ids): stop that process, correct its key, delete ' +
      `the row${single ? "" : "s"} of ${named} from encryption_key_checks, and start again.`
    : "";
  throw new ConfigError(
    `${subject} in ${storage}: the check value that the store recorded for ${single ? "it" : "each"} ` +
      "(table encryption_key_checks) does not decrypt. Secrets stored under such an id would not decrypt, and other " +
      "processes could not decrypt the secrets that this one writes. Configure the key that was first used under " +
      `${single ? "this id" : "each id"}; a new key needs a new key id.${recovery}`,
  );
}

/**
 * Throws unless `key` decrypts more of the stored secrets that it tries
 * under its id than it fails to. One success is not enough, because before
 * the checks existed a replica with a wrong key may have written some of
 * them, and that replica must not record its key when it starts first.
 * Only a failed authentication counts against the key, because a malformed
 * value does not show which key wrote it.
 *
 * @throws ConfigError naming the key id and the integrations whose secrets it does not decrypt.
 */
async function assertDecryptsStoredSecrets(
  store: KeyCheckStore,
  key: EncryptionKey,
  keys: LoadedEncryptionKeys,
  storage: string,
): Promise<void> {
  const cipher = cipherOf(key);
  const prefix = `${CIPHERTEXT_PREFIX}${key.id}:`;
  let decrypted = 0;
  let failures = 0;
  const failed = new Set<string>();

  for (const secrets of await store.secretsUnderKey(key.id, SECRETS_TRIED)) {
    for (const { field, value } of SECRET_COLUMNS) {
      const stored = value(secrets);
      if (!stored.startsWith(prefix)) {
        continue;
      }
      try {
        cipher.decrypt(stored, { integrationId: secrets.integrationId, field });
        decrypted++;
      } catch (error) {
        if (!(error instanceof SecretDecryptionError)) {
          throw error;
        }
        if (error.failure === "authentication_failed") {
          failures++;
          failed.add(secrets.integrationId);
        }
      }
    }
  }
  if (decrypted > failures || failures === 0) {
    return;
  }

  const integrations = [...failed].join(", ");
  const finding =
    decrypted === 0
      ? `it does not decrypt the secrets stored under "${key.id}" (integrations ${integrations}). Sends through them would fail, and other ` +
        "processes could not decrypt the secrets that this one writes. Configure the key that encrypted them"
      : `it decrypts ${decrypted} of the ${decrypted + failures} secrets tried under "${key.id}" but not those of integrations ` +
        `${integrations}, so another key wrote those. Configure the key that encrypted most of them`;
  throw new ConfigError(
    `key id "${key.id}" in ${keys.setting} is not the key that was first used under this id in ${storage}: ${finding}; ` +
      "a new key needs a new key id.",
  );
}
