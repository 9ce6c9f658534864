import type { Logger } from "pino";

import { ConfigError } from "../config/load-config.js";
import type { Config } from "../config/settings.js";
import { PROCEDURE_SCOPES, PUBLIC_PROCEDURES } from "../rpc/procedure-scopes.js";
import { loadApiKeys } from "./api-key-source.js";
import { ApiKeyAuthenticator } from "./caller-authenticator.js";
import { loadEncryptionKeys, type LoadedEncryptionKeys } from "./encryption-key-source.js";
import { isLoopbackHost } from "./loopback-host.js";
import { SecretCipher } from "./secret-cipher.js";

/** Caller authentication and the cipher of stored secrets, ready for the service. */
export interface Security {
  access: ApiKeyAuthenticator;
  cipher: SecretCipher;
  /** The keys of `cipher` and where they were configured, for the check against the store (`checkStoredEncryptionKeys`). */
  encryption: LoadedEncryptionKeys;
}

/**
 * Loads the API keys and encryption keys, checks that the service may
 * listen where it is configured to, and logs whether authentication is on
 * and which encryption key writes use. Runs before storage is opened and
 * before the port is bound, so a configuration error leaves nothing behind.
 *
 * @throws ConfigError when HOST is not a loopback address and no API keys
 *   are configured, or when a key setting is invalid.
 */
export async function prepareSecurity(config: Config, logger: Logger): Promise<Security> {
  const apiKeys = await loadApiKeys(config);
  if (apiKeys.keys.length === 0 && !isLoopbackHost(config.host)) {
    const { names } = config;
    throw new ConfigError(
      `${names.host} ${config.host} accepts connections from other hosts, but no API_KEYS are configured, so anyone who ` +
        `reaches the port could send SMS. Set API_KEYS or API_KEYS_FILE (npm run create-api-key), or set ${names.host} to 127.0.0.1.`,
    );
  }
  if (apiKeys.keys.length === 0 && config.corsAllowedOrigins.length > 0) {
    // The loopback Host check does not stop a page in the operator's own browser, which calls 127.0.0.1 as such.
    throw new ConfigError(
      `${config.names.corsAllowedOrigins} lets pages of other origins call the API from a browser, but no API_KEYS are configured, ` +
        "so any such page could call every method, TestIntegration included, which sends the stored gateway keys to a URL the caller names. " +
        `Set API_KEYS or API_KEYS_FILE (npm run create-api-key), or unset ${config.names.corsAllowedOrigins}.`,
    );
  }

  const encryption = await loadEncryptionKeys(config, logger);
  const access = new ApiKeyAuthenticator(apiKeys.keys, { scopes: PROCEDURE_SCOPES, publicProcedures: PUBLIC_PROCEDURES }, logger);

  if (access.enabled) {
    logger.info(
      { authentication: "on", apiKeys: apiKeys.keys.map((key) => key.name), source: apiKeys.source },
      "caller authentication on: calls need authorization: Bearer <API key>",
    );
  } else {
    logger.info(
      { authentication: "off", host: config.host },
      "caller authentication off because API_KEYS is not set; allowed only on a loopback HOST",
    );
  }
  logger.info(
    { keyId: encryption.ring.current.id, keyIds: encryption.ring.ids, source: encryption.source },
    "stored gateway secrets are encrypted with AES-256-GCM",
  );

  return { access, cipher: new SecretCipher(encryption.ring), encryption };
}
