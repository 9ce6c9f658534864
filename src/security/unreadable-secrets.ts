import type { Logger } from "pino";

import type { IntegrationFields } from "../domain/integration.js";
import { SecretUnreadableError } from "../errors.js";
import type { StoredIntegration } from "../store/integration-store.js";
import type { DecryptionFailure, SecretField } from "./secret-cipher.js";

/** A stored secret that the configured keys cannot decrypt. */
export interface UnreadableSecret {
  field: SecretField;
  /** Key id written in the ciphertext, empty when the value is malformed. */
  keyId: string;
  failure: DecryptionFailure;
}

/** The credential header of each secret, which decides whether an empty secret means "none". */
const HEADER_OF: Record<SecretField, "apiKeyHeader" | "secretKeyHeader"> = {
  api_key: "apiKeyHeader",
  secret_key: "secretKeyHeader",
};

const VALUE_OF: Record<SecretField, "apiKey" | "secretKey"> = {
  api_key: "apiKey",
  secret_key: "secretKey",
};

/** Builds the error that explains how an operator makes the integration usable again. */
export function unreadableSecretError(integrationId: string, secret: UnreadableSecret): SecretUnreadableError {
  const stored = `stored ${secret.field} of integration "${integrationId}"`;
  const reconfigure = `reconfigure the integration's ${secret.field}`;
  let message: string;
  switch (secret.failure) {
    case "unknown_key":
      message = `${stored} cannot be decrypted with the configured keys (key id ${secret.keyId}); configure key ${secret.keyId} in ENCRYPTION_KEYS or ${reconfigure}`;
      break;
    case "authentication_failed":
      message =
        `${stored} cannot be decrypted with the configured keys (key id ${secret.keyId}): the configured key ${secret.keyId} ` +
        `is not the one that encrypted it, or the stored value was altered; configure the original key ${secret.keyId} or ${reconfigure}`;
      break;
    case "malformed":
      message = `${stored} is not a valid encrypted value; ${reconfigure}`;
      break;
  }
  return new SecretUnreadableError(message, integrationId, secret.field, secret.keyId);
}

/**
 * Throws when an integration has a secret that cannot be decrypted, so a
 * send never goes out without its credentials. Logs the failure at error
 * level, because only an operator can fix it.
 *
 * @throws SecretUnreadableError for the first unreadable secret.
 */
export function assertSecretsReadable(integration: StoredIntegration, log: Logger): void {
  const [first] = integration.unreadableSecrets ?? [];
  if (first === undefined) {
    return;
  }

  for (const secret of integration.unreadableSecrets ?? []) {
    log.error(
      { integrationId: integration.id, field: secret.field, keyId: secret.keyId, failure: secret.failure },
      "stored secret cannot be decrypted with the configured keys",
    );
  }
  throw unreadableSecretError(integration.id, first);
}

/**
 * Throws when an update of an integration with an unreadable secret would
 * store that secret as empty while its header stays set. An unreadable
 * secret reads as "", so an update that does not send a new value would
 * otherwise drop the stored ciphertext, which the right key could still
 * decrypt. Setting a new value, or clearing the header and the secret
 * together, passes.
 *
 * @throws SecretUnreadableError naming the secret to send.
 */
export function assertUnreadableSecretsReplaced(existing: StoredIntegration, fields: IntegrationFields): void {
  for (const secret of existing.unreadableSecrets ?? []) {
    if (fields[VALUE_OF[secret.field]] === "" && fields[HEADER_OF[secret.field]] !== "") {
      throw unreadableSecretError(existing.id, secret);
    }
  }
}
