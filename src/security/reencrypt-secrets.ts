import type { Logger } from "pino";

import type { IntegrationStore, SecretColumnsStore, StoredSecrets } from "../store/integration-store.js";
import { SecretDecryptionError, type SecretCipher, type SecretField } from "./secret-cipher.js";
import { unreadableSecretError } from "./unreadable-secrets.js";

/** Integrations read per page while walking the store. */
const PAGE_SIZE = 100;

/**
 * Tries per integration before giving up on one that keeps changing. Each
 * retry follows a concurrent write by the service, so a few are plenty.
 */
const MAX_ATTEMPTS_PER_INTEGRATION = 5;

/** An integration whose secrets were left as they are. */
export interface ReencryptFailure {
  integrationId: string;
  /** Why, in words fit for the command's output; never contains a secret. */
  reason: string;
}

/** Counts and failures of one re-encryption pass. */
export interface ReencryptResult {
  /** Key id every rewritten secret is now encrypted under. */
  keyId: string;
  /** Integrations read. */
  examined: number;
  /** Integrations whose stored secrets were rewritten. */
  reencrypted: number;
  /** Integrations whose secrets were already empty or under the newest key. */
  alreadyCurrent: number;
  failures: ReencryptFailure[];
}

type RowOutcome = "reencrypted" | "current" | "gone";

/** The store operations a re-encryption pass uses. */
export type ReencryptableStore = Pick<IntegrationStore, "list" | "get"> & SecretColumnsStore;

/**
 * Rewrites every stored secret that is legacy plain text or encrypted under
 * an older key, so that it is encrypted under the newest key.
 *
 * Each integration is rewritten by one conditional statement that matches
 * the values just read, so the pass is safe while the service runs: when
 * the service changes a row in between, the row is read again and retried.
 * Running it again finds nothing to do. An integration whose secret no
 * configured key decrypts is reported and skipped.
 *
 * @param store the store without encryption, whose `apiKey` and `secretKey` are the stored values.
 */
export async function reencryptSecrets(
  store: ReencryptableStore,
  cipher: SecretCipher,
  logger: Logger,
): Promise<ReencryptResult> {
  const result: ReencryptResult = { keyId: cipher.currentKeyId, examined: 0, reencrypted: 0, alreadyCurrent: 0, failures: [] };

  let afterId: string | undefined;
  for (;;) {
    const page = await store.list({ limit: PAGE_SIZE, afterId });
    for (const row of page) {
      result.examined++;
      try {
        const outcome = await reencryptRow(store, cipher, row.id, row);
        if (outcome === "reencrypted") {
          result.reencrypted++;
          logger.info({ integrationId: row.id, keyId: cipher.currentKeyId }, "re-encrypted stored secrets");
        } else if (outcome === "current") {
          result.alreadyCurrent++;
        }
      } catch (error) {
        if (!(error instanceof SecretDecryptionError || error instanceof ConcurrentChangeError)) {
          throw error;
        }
        result.failures.push({ integrationId: row.id, reason: failureReason(error) });
        logger.error({ integrationId: row.id, reason: failureReason(error) }, "could not re-encrypt stored secrets");
      }
    }

    if (page.length < PAGE_SIZE) {
      return result;
    }
    afterId = page.at(-1)?.id;
  }
}

/** The row changed on every attempt. */
class ConcurrentChangeError extends Error {
  override readonly name = "ConcurrentChangeError";
}

async function reencryptRow(
  store: ReencryptableStore,
  cipher: SecretCipher,
  integrationId: string,
  read: StoredSecrets,
): Promise<RowOutcome> {
  let stored: StoredSecrets = { apiKey: read.apiKey, secretKey: read.secretKey };
  for (let attempt = 1; attempt <= MAX_ATTEMPTS_PER_INTEGRATION; attempt++) {
    if (cipher.isCurrent(stored.apiKey) && cipher.isCurrent(stored.secretKey)) {
      return "current";
    }

    const rewrite = (value: string, field: SecretField): string => {
      if (cipher.isCurrent(value)) {
        return value;
      }
      const binding = { integrationId, field };
      return cipher.encrypt(cipher.decrypt(value, binding), binding);
    };
    const replacement = { apiKey: rewrite(stored.apiKey, "api_key"), secretKey: rewrite(stored.secretKey, "secret_key") };
    if (await store.replaceSecrets(integrationId, stored, replacement)) {
      return "reencrypted";
    }

    const fresh = await store.get(integrationId);
    if (fresh === null) {
      return "gone";
    }
    stored = { apiKey: fresh.apiKey, secretKey: fresh.secretKey };
  }
  throw new ConcurrentChangeError(`changed ${MAX_ATTEMPTS_PER_INTEGRATION} times while being re-encrypted; run the command again`);
}

function failureReason(error: SecretDecryptionError | ConcurrentChangeError): string {
  if (error instanceof ConcurrentChangeError) {
    return error.message;
  }
  const { binding, keyId, failure } = error;
  return unreadableSecretError(binding.integrationId, { field: binding.field, keyId, failure }).message;
}
