import { existsSync } from "node:fs";
import path from "node:path";

import type { DestinationStream } from "pino";

import { ConfigError, loadConfig, settingsHelp } from "../config/load-config.js";
import { SETTINGS, type SettingKey } from "../config/settings.js";
import { createLogger } from "../logger.js";
import { openConfiguredStore } from "../store/open-configured-store.js";
import { SQLITE_FILE_NAME } from "../store/sqlite-database.js";
import { checkStoredEncryptionKeys } from "./encryption-key-check.js";
import { loadEncryptionKeys } from "./encryption-key-source.js";
import { reencryptSecrets } from "./reencrypt-secrets.js";
import { SecretCipher } from "./secret-cipher.js";

/** Outputs of the command: its result, its errors, and the service's JSON log lines. */
export interface CommandOutput {
  out(line: string): void;
  err(line: string): void;
  logs: DestinationStream;
}

/** The settings that the command reads: where the store is, its keys, and the log level. */
const READ_SETTINGS: ReadonlySet<SettingKey> = new Set([
  "dataDir",
  "databaseUrl",
  "databaseSchema",
  "sqliteSynchronous",
  "encryptionKeys",
  "encryptionKeysFile",
  "logLevel",
]);
const REENCRYPT_SETTINGS = SETTINGS.filter((setting) => READ_SETTINGS.has(setting.key));

/** Returns the text of `npm run reencrypt -- --help`. */
export function reencryptHelpText(): string {
  return [
    "Usage: npm run reencrypt -- [--flag value ...]",
    "",
    "Re-encrypts every stored gateway secret under the newest encryption key (the last one configured).",
    "It may run while the service runs. Give it the same values of these settings as the service;",
    "it reads no other setting. Each is read from its flag, else its environment variable, else the default.",
    "",
    ...settingsHelp(REENCRYPT_SETTINGS),
    "",
    "Exit codes: 0 when every secret is under the newest key; 1 when some could not be re-encrypted,",
    "when the store has no integrations, or when the store failed; 2 for a setting to fix, such as a",
    "configured key that is not the one first used under its key id.",
  ].join("\n");
}

/**
 * Runs `npm run reencrypt`. It reads the store's settings as the service
 * does (flags, environment, defaults) and opens the same store with the same
 * keys. It checks the keys against the store as the service does at
 * start-up, then rewrites every stored secret under the newest key.
 *
 * @returns the exit code. 0 when every secret is under the newest key. 1
 *   when some could not be re-encrypted, when the store has no integrations
 *   (as a mistyped location looks), or when the store failed. 2 for a
 *   configuration error: a data folder without the service's SQLite file,
 *   a PostgreSQL database it cannot connect to, a PostgreSQL schema that
 *   does not exist, or a configured key that is not the key first used
 *   under its id.
 */
export async function runReencryptCommand(
  argv: readonly string[],
  env: NodeJS.ProcessEnv,
  output: CommandOutput,
): Promise<number> {
  try {
    const loaded = loadConfig(argv, env, REENCRYPT_SETTINGS);
    if (loaded.kind === "help") {
      output.out(reencryptHelpText());
      return 0;
    }

    const { config } = loaded;
    const { names } = config;
    const sqliteFile = path.join(config.dataDir, SQLITE_FILE_NAME);
    // Opening the store would create an empty one, and a key file, in a mistyped folder.
    if (config.databaseUrl === "" && !existsSync(sqliteFile)) {
      throw new ConfigError(`no database at ${sqliteFile}; set ${names.dataDir} to the folder the service keeps its data in`);
    }
    const logger = createLogger(config.logLevel, output.logs);
    const keys = await loadEncryptionKeys(config, logger);
    const cipher = new SecretCipher(keys.ring);
    const { store, keyChecks, description } = await openConfiguredStore(config, logger, "reencrypt");

    try {
      await checkStoredEncryptionKeys(keyChecks, keys, description, logger);
      const result = await reencryptSecrets(store, cipher, logger);
      output.out(
        `re-encrypted ${result.reencrypted} of ${result.examined} integrations under key ${result.keyId} ` +
          `in ${description} (${result.alreadyCurrent} already current, ${result.failures.length} failed)`,
      );
      for (const failure of result.failures) {
        output.err(`integration ${failure.integrationId}: ${failure.reason}`);
      }
      if (result.examined === 0) {
        const location = config.databaseUrl === "" ? names.dataDir : `${names.databaseUrl} and ${names.databaseSchema}`;
        output.err(`reencrypt: found no integrations in ${description}; if the service has some, check ${location}, and keep the old key`);
        return 1;
      }
      return result.failures.length === 0 ? 0 : 1;
    } finally {
      await store.close();
    }
  } catch (error) {
    if (error instanceof ConfigError) {
      output.err(`reencrypt: ${error.message}`);
      return 2;
    }
    output.err(`reencrypt: failed: ${error instanceof Error ? error.message : String(error)}`);
    return 1;
  }
}
