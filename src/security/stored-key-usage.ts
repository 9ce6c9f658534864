import type { Logger } from "pino";

import type { LoadedEncryptionKeys } from "./encryption-key-source.js";

/**
 * Logs what the stored secrets need from the configured keys:
 *
 * - one error line when secrets are stored under key ids that are not
 *   configured, with those ids and the number of integrations, because
 *   every send through such an integration fails until an operator acts.
 *   The service still starts, because setting the secrets again through
 *   ConfigureIntegration is one of the fixes.
 * - for the keys of the generated key file in DATA_DIR that the configured
 *   keys leave out: a warning when stored secrets use them, else an info
 *   line that the file is unused.
 *
 * @param usage integrations per key id of their stored secrets. An
 *   integration whose two secrets are under two such ids counts once per id.
 */
export function reportStoredKeyUsage(usage: ReadonlyMap<string, number>, keys: LoadedEncryptionKeys, logger: Logger): void {
  const missing = [...usage].filter(([id]) => keys.ring.key(id) === undefined);
  if (missing.length > 0) {
    logger.error(
      {
        keyIds: missing.map(([id]) => id),
        integrations: missing.reduce((sum, [, count]) => sum + count, 0),
        integrationsByKeyId: Object.fromEntries(missing),
        configuredKeyIds: keys.ring.ids,
        source: keys.source,
      },
      "stored gateway secrets are encrypted under key ids that are not configured; sends through these integrations fail " +
        "with FAILED_PRECONDITION until those keys are added to ENCRYPTION_KEYS or ENCRYPTION_KEYS_FILE, or the secrets " +
        "are set again with ConfigureIntegration",
    );
  }

  const leftOut = keys.generatedKeysLeftOut;
  if (leftOut === undefined) {
    return;
  }
  const used = leftOut.keyIds.filter((id) => usage.has(id));
  if (used.length > 0) {
    logger.warn(
      { file: leftOut.file, keyIds: used },
      "the generated key file in DATA_DIR has keys that stored secrets use but the configured keys leave out; " +
        "copy their lines from that file into the configured keys, restart, then run npm run reencrypt",
    );
  } else {
    logger.info(
      { file: leftOut.file, keyIds: leftOut.keyIds },
      "no stored secret uses the keys of the generated key file in DATA_DIR, which the configured keys replace; " +
        "the file may be removed once it is backed up",
    );
  }
}
