import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  IntegrationSchema,
  type Integration as IntegrationMessage,
} from "../../gen/smsgateway/v1/integration_pb.js";
import {
  DEFAULT_DATE_PATH,
  DEFAULT_ID_PATH,
  type Integration,
  type IntegrationFields,
} from "../domain/integration.js";
import { InvalidArgumentError } from "../errors.js";
import type { SecretField } from "../security/secret-cipher.js";
import type { StoredIntegration } from "../store/integration-store.js";

type FieldKey = keyof IntegrationFields;

/** Fields a caller may name in an update mask, by their proto (snake_case) name. */
const MASKABLE_FIELDS: Record<string, FieldKey> = {
  display_name: "displayName",
  base_url: "baseUrl",
  api_key_header: "apiKeyHeader",
  api_key: "apiKey",
  secret_key_header: "secretKeyHeader",
  secret_key: "secretKey",
  default_sender: "defaultSender",
  id_path: "idPath",
  date_path: "datePath",
  authenticate_by_token: "authenticateByToken",
  auth_url: "authUrl",
  token_key: "tokenKey",
  max_concurrent_sends: "maxConcurrentSends",
  max_sends_per_second: "maxSendsPerSecond",
  token_lifetime_seconds: "tokenLifetimeSeconds",
};

/** Reads the settable fields of a request message, filling in the default paths. */
export function fieldsFromMessage(message: IntegrationMessage): IntegrationFields {
  return {
    displayName: message.displayName.trim(),
    baseUrl: message.baseUrl.trim(),
    apiKeyHeader: message.apiKeyHeader.trim(),
    apiKey: message.apiKey,
    secretKeyHeader: message.secretKeyHeader.trim(),
    secretKey: message.secretKey,
    defaultSender: message.defaultSender,
    idPath: message.idPath.trim() || DEFAULT_ID_PATH,
    datePath: message.datePath.trim() || DEFAULT_DATE_PATH,
    authenticateByToken: message.authenticateByToken,
    authUrl: message.authUrl.trim(),
    tokenKey: message.tokenKey.trim(),
    maxConcurrentSends: message.maxConcurrentSends,
    maxSendsPerSecond: message.maxSendsPerSecond,
    tokenLifetimeSeconds: message.tokenLifetimeSeconds ?? null,
  };
}

/**
 * Computes the fields of an update. With a mask, only the named fields
 * change. Without one, every field is replaced, except that an empty secret
 * keeps the stored one, because reads never return secrets. A mask that
 * names `secret_key` with an empty value removes the secret key, and with it
 * `secret_key_header`, unless the mask also names the header.
 */
export function applyUpdate(existing: Integration, message: IntegrationMessage, maskPaths: readonly string[]): IntegrationFields {
  const incoming = fieldsFromMessage(message);
  const result: IntegrationFields = { ...existing };
  if (maskPaths.length === 0) {
    Object.assign(result, incoming);
    result.apiKey = incoming.apiKey || existing.apiKey;
    result.secretKey = incoming.secretKey || existing.secretKey;
    return result;
  }

  const keys = maskedKeys(maskPaths);
  for (const key of keys) {
    (result as Record<FieldKey, unknown>)[key] = incoming[key];
  }
  // A secret key header without a key is invalid, so removing the key removes its header.
  if (keys.includes("secretKey") && incoming.secretKey === "" && !keys.includes("secretKeyHeader")) {
    result.secretKeyHeader = "";
  }
  return result;
}

/**
 * Checks that every mask path names a field an update may change, for a
 * request that creates the integration and so sets every field.
 *
 * @throws InvalidArgumentError on `update_mask` for the first unknown path.
 */
export function checkMaskPaths(paths: readonly string[]): void {
  maskedKeys(paths);
}

/** Converts mask paths (snake_case or lowerCamelCase) to field keys, rejecting unknown ones. */
function maskedKeys(paths: readonly string[]): FieldKey[] {
  const keys: FieldKey[] = [];
  for (const path of paths) {
    const snake = path.replace(/[A-Z]/g, (letter) => `_${letter.toLowerCase()}`);
    // Own properties only, so that paths such as "constructor" find no inherited member.
    const key = Object.hasOwn(MASKABLE_FIELDS, snake) ? MASKABLE_FIELDS[snake] : undefined;
    if (key === undefined) {
      const allowed = Object.keys(MASKABLE_FIELDS).join(", ");
      throw InvalidArgumentError.field(
        "update_mask",
        `"${path}" cannot be updated; name fields among: ${allowed}. ` +
          'In JSON, write them in lowerCamelCase and join them with commas and no spaces, as in "updateMask": "baseUrl,defaultSender"',
      );
    }
    keys.push(key);
  }
  return keys;
}

/** Hint of a stored secret that the configured encryption keys cannot decrypt. */
export const UNREADABLE_SECRET_HINT = "(cannot be decrypted)";

/**
 * Builds the API view of an integration: secrets empty, masked hints
 * instead, and {@link UNREADABLE_SECRET_HINT} for a secret that is stored
 * but cannot be decrypted.
 */
export function toMessage(integration: Integration & Pick<StoredIntegration, "unreadableSecrets">): IntegrationMessage {
  const unreadable = new Set(integration.unreadableSecrets?.map((secret) => secret.field));
  const hint = (field: SecretField, secret: string) => (unreadable.has(field) ? UNREADABLE_SECRET_HINT : secretHint(secret));
  return create(IntegrationSchema, {
    id: integration.id,
    displayName: integration.displayName,
    baseUrl: integration.baseUrl,
    apiKeyHeader: integration.apiKeyHeader,
    secretKeyHeader: integration.secretKeyHeader,
    defaultSender: integration.defaultSender,
    idPath: integration.idPath,
    datePath: integration.datePath,
    authenticateByToken: integration.authenticateByToken,
    authUrl: integration.authUrl,
    tokenKey: integration.tokenKey,
    maxConcurrentSends: integration.maxConcurrentSends,
    maxSendsPerSecond: integration.maxSendsPerSecond,
    tokenLifetimeSeconds: integration.tokenLifetimeSeconds ?? undefined,
    apiKeyHint: hint("api_key", integration.apiKey),
    secretKeyHint: hint("secret_key", integration.secretKey),
    createTime: timestampFromDate(integration.createTime),
    updateTime: timestampFromDate(integration.updateTime),
  });
}

/**
 * Returns a hint that lets an operator recognise a secret without revealing
 * it: the last 4 characters behind asterisks, or asterisks alone when the
 * secret is 8 characters or shorter.
 */
export function secretHint(secret: string): string {
  if (secret === "") {
    return "";
  }
  if (secret.length <= 8) {
    return "********";
  }
  return `****${secret.slice(-4)}`;
}
