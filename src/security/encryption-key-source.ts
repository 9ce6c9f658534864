import { randomBytes } from "node:crypto";
import { link, readFile, stat, unlink, writeFile } from "node:fs/promises";
import path from "node:path";

import type { Logger } from "pino";

import { ConfigError } from "../config/load-config.js";
import { unreadableFileError, unwritableFolderError } from "../config/path-errors.js";
import type { Config } from "../config/settings.js";
import { makeDirectory } from "../make-directory.js";
import { ENCRYPTION_KEY_BYTES, parseEncryptionKeys, type EncryptionKeyRing } from "./encryption-key-ring.js";

/** Name of the key file created in the data directory when no key is configured. */
export const GENERATED_KEY_FILE_NAME = "encryption-keys";

/** The settings that decide where the encryption keys come from. */
export type EncryptionKeySettings = Pick<Config, "encryptionKeys" | "encryptionKeysFile" | "databaseUrl" | "dataDir" | "names">;

/** The configured keys and where they were read, for the start-up log. */
export interface LoadedEncryptionKeys {
  ring: EncryptionKeyRing;
  /** `ENCRYPTION_KEYS`, or the path of the key file. */
  source: string;
  /**
   * Location of the keys' configuration, for error messages: the setting as
   * the operator gave it (`ENCRYPTION_KEYS` or `--encryption-keys`), the
   * setting and the path of ENCRYPTION_KEYS_FILE, or the generated key file and its path.
   */
  setting: string;
  /**
   * The keys of the generated key file in DATA_DIR that the configured keys
   * leave out, when keys are configured on the SQLite store and that file
   * exists. Whether stored secrets use them is known only once the store is
   * open (see `reportStoredKeyUsage`).
   */
  generatedKeysLeftOut?: GeneratedKeysLeftOut;
}

/** Keys of the generated key file that the configured keys leave out. */
export interface GeneratedKeysLeftOut {
  file: string;
  keyIds: string[];
}

/**
 * Loads the keys that encrypt stored secrets: from `ENCRYPTION_KEYS`, else
 * from `ENCRYPTION_KEYS_FILE`, else, on the embedded SQLite store only, from
 * `DATA_DIR/encryption-keys`, which is created with one new key on first
 * start and reused afterwards. A warning names that file at every start,
 * because losing it makes the stored secrets unreadable.
 *
 * PostgreSQL gets no generated key: replicas share the database, and a key
 * generated on one machine would leave the others unable to decrypt.
 *
 * @throws ConfigError when the settings conflict, no key is configured for
 *   PostgreSQL, or a key or file is invalid. Messages never contain key material.
 */
export async function loadEncryptionKeys(settings: EncryptionKeySettings, logger: Logger): Promise<LoadedEncryptionKeys> {
  const { encryptionKeys, encryptionKeysFile, names } = settings;
  if (encryptionKeys !== "" && encryptionKeysFile !== "") {
    throw new ConfigError(`${names.encryptionKeys} and ${names.encryptionKeysFile} are both set; set only one of them.`);
  }
  if (encryptionKeys !== "") {
    const ring = parsed(encryptionKeys, names.encryptionKeys);
    const generatedKeysLeftOut = await findGeneratedKeysLeftOut(settings, ring);
    return { ring, source: "ENCRYPTION_KEYS", setting: names.encryptionKeys, generatedKeysLeftOut };
  }
  if (encryptionKeysFile !== "") {
    const setting = `${names.encryptionKeysFile} ${encryptionKeysFile}`;
    const text = await readKeyFile(encryptionKeysFile, names.encryptionKeysFile, logger);
    const ring = parsed(text, setting);
    const generatedKeysLeftOut = await findGeneratedKeysLeftOut(settings, ring);
    return { ring, source: encryptionKeysFile, setting, generatedKeysLeftOut };
  }
  if (settings.databaseUrl !== "") {
    throw new ConfigError(
      `No encryption key is configured for the PostgreSQL store (${names.databaseUrl} is set). Set ENCRYPTION_KEYS or ` +
        "ENCRYPTION_KEYS_FILE to keyId:base64key entries, with the same keys on every replica " +
        "(make a key with: openssl rand -base64 32).",
    );
  }

  const file = path.join(settings.dataDir, GENERATED_KEY_FILE_NAME);
  const created = await createKeyFileIfMissing(file, settings);
  const text = await readKeyFile(file, `the generated key file in ${names.dataDir}`, logger);
  const ring = parsed(text, file);
  logger.warn(
    { file, keyId: ring.current.id },
    created
      ? "created an encryption key file for stored gateway secrets because ENCRYPTION_KEYS is not set; back it up with the database"
      : "encrypting stored gateway secrets with the key file in DATA_DIR because ENCRYPTION_KEYS is not set; back it up with the database",
  );
  return { ring, source: file, setting: `the key file generated in ${names.dataDir} (${file})` };
}

function parsed(text: string, source: string): EncryptionKeyRing {
  try {
    return parseEncryptionKeys(text, source);
  } catch (error) {
    throw new ConfigError(`${(error as Error).message}.`);
  }
}

/**
 * Returns the keys of the SQLite store's generated key file that the
 * configured keys leave out, which happens when an operator moves from the
 * generated file to ENCRYPTION_KEYS without copying its key. Returns
 * undefined on PostgreSQL, without such a file, or when every key of the
 * file is configured.
 */
async function findGeneratedKeysLeftOut(settings: EncryptionKeySettings, ring: EncryptionKeyRing): Promise<GeneratedKeysLeftOut | undefined> {
  if (settings.databaseUrl !== "") {
    return undefined;
  }

  const file = path.join(settings.dataDir, GENERATED_KEY_FILE_NAME);
  let generated: EncryptionKeyRing;
  try {
    generated = parseEncryptionKeys(await readFile(file, "utf8"), file);
  } catch {
    // No generated file, or one that is not usable: there is nothing to compare.
    return undefined;
  }
  const keyIds = generated.ids.filter((id) => ring.key(id) === undefined);
  return keyIds.length === 0 ? undefined : { file, keyIds };
}

/** Reads a key file, and warns when users other than the owner may read it. Errors name the file by `setting`. */
async function readKeyFile(file: string, setting: string, logger: Logger): Promise<string> {
  try {
    const { mode } = await stat(file);
    if ((mode & 0o077) !== 0) {
      logger.warn(
        { file, mode: `0${(mode & 0o777).toString(8)}` },
        "encryption key file is accessible to other users; restrict it with chmod 600",
      );
    }
    return await readFile(file, "utf8");
  } catch (error) {
    throw unreadableFileError(setting, file, error, "a file of keyId:base64key entries");
  }
}

/**
 * Creates the key file with one new key, readable by the owner only, unless
 * it exists. Writing a temporary file and hard-linking it into place means
 * two processes starting together never see a half-written file, and only
 * one of their keys is kept.
 *
 * @returns true when this call created the file.
 */
async function createKeyFileIfMissing(file: string, settings: EncryptionKeySettings): Promise<boolean> {
  const directory = path.dirname(file);
  const temporary = `${file}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
  try {
    await makeDirectory(directory, 0o700);
  } catch (error) {
    throw unwritableFolderError(settings.names.dataDir, settings.dataDir, "create the folder", error);
  }
  try {
    if (await exists(file)) {
      return false;
    }
    await writeFile(temporary, generatedKeyFile(new Date()), { mode: 0o600, flag: "wx" });
    await link(temporary, file);
    return true;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "EEXIST") {
      return false;
    }
    throw unwritableFolderError(settings.names.dataDir, settings.dataDir, `create the encryption key file ${file}`, error);
  } finally {
    await unlink(temporary).catch(() => undefined);
  }
}

async function exists(file: string): Promise<boolean> {
  try {
    await stat(file);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") {
      return false;
    }
    throw error;
  }
}

/**
 * Returns the text of a new key file: a comment on what it is, and one key
 * named after today's date and a random suffix. The suffix keeps a key
 * generated again on the same day, after the file was deleted, from taking
 * an id that the store has recorded for the first key (see
 * `encryption-key-check.ts`), which would stop the service from starting.
 */
function generatedKeyFile(now: Date): string {
  const keyId = `local-${now.toISOString().slice(0, 10).replaceAll("-", "")}-${randomBytes(3).toString("hex")}`;
  const key = randomBytes(ENCRYPTION_KEY_BYTES).toString("base64");
  return [
    `# Encryption keys of smsgateway's stored gateway secrets, created ${now.toISOString()}`,
    "# because neither ENCRYPTION_KEYS nor ENCRYPTION_KEYS_FILE was set.",
    "# Back this file up with smsgateway.db: without it the stored secrets cannot be decrypted.",
    "# To rotate, append a new keyId:base64key line (the last key encrypts new writes),",
    "# restart, then run: npm run reencrypt",
    `${keyId}:${key}`,
    "",
  ].join("\n");
}
