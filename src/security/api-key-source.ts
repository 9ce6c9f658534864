import { readFile } from "node:fs/promises";

import { ConfigError } from "../config/load-config.js";
import { unreadableFileError } from "../config/path-errors.js";
import type { Config } from "../config/settings.js";
import { parseApiKeys, type ApiKeyEntry } from "./api-keys.js";

/** The settings that list the callers' API keys. */
export type ApiKeySettings = Pick<Config, "apiKeys" | "apiKeysFile" | "names">;

/** The configured API keys and where they were read, for the start-up log. */
export interface LoadedApiKeys {
  keys: ApiKeyEntry[];
  /** `API_KEYS`, the path of the file, or empty when none is configured. */
  source: string;
}

/**
 * Reads the API keys from `API_KEYS`, else from the file `API_KEYS_FILE`.
 * Neither set means no keys, which turns authentication off. A setting or
 * a file that is set but lists no key is rejected, because its owner meant
 * to turn authentication on.
 *
 * @throws ConfigError when both are set, the file cannot be read, or an entry is invalid.
 */
export async function loadApiKeys(settings: ApiKeySettings): Promise<LoadedApiKeys> {
  const { apiKeys, apiKeysFile, names } = settings;
  if (apiKeys !== "" && apiKeysFile !== "") {
    throw new ConfigError(`${names.apiKeys} and ${names.apiKeysFile} are both set; set only one of them.`);
  }
  if (apiKeys !== "") {
    const keys = parsed(apiKeys, names.apiKeys);
    if (keys.length === 0) {
      throw new ConfigError(
        `${names.apiKeys} is set but lists no API key; give comma-separated name:scope+scope:sha256hex entries (npm run create-api-key) or leave ${names.apiKeys} out.`,
      );
    }
    return { keys, source: "API_KEYS" };
  }
  if (apiKeysFile === "") {
    return { keys: [], source: "" };
  }

  let text: string;
  try {
    text = await readFile(apiKeysFile, "utf8");
  } catch (error) {
    throw unreadableFileError(names.apiKeysFile, apiKeysFile, error, "a file of name:scope+scope:sha256hex lines");
  }
  const keys = parsed(text, `${names.apiKeysFile} ${apiKeysFile}`);
  if (keys.length === 0) {
    throw new ConfigError(
      `${names.apiKeysFile} ${apiKeysFile} lists no API key; add name:scope+scope:sha256hex lines (npm run create-api-key) or leave ${names.apiKeysFile} out.`,
    );
  }
  return { keys, source: apiKeysFile };
}

function parsed(text: string, source: string): ApiKeyEntry[] {
  try {
    return parseApiKeys(text, source);
  } catch (error) {
    throw new ConfigError(`${(error as Error).message}.`);
  }
}
