import { IDEMPOTENCY_KEY_HEADER, isIdempotencyKeyHeader } from "../domain/http-header.js";
import { credentialHeaderFields, type Integration } from "../domain/integration.js";
import { IntegrationSettingError, InvalidArgumentError } from "../errors.js";
import type { JsonObject } from "./json-value.js";
import { applyMergePatch } from "./merge-patch.js";
import { addPassthroughHeaders } from "./passthrough-headers.js";

/** Gateway-specific additions to one send request. */
export interface Passthrough {
  /** Merged into the JSON body by RFC 7396 JSON Merge Patch. */
  body?: JsonObject;
  /** Extra request headers, which cannot replace credential or framing headers. */
  headers?: Record<string, string>;
  /** Query parameters appended to the base URL, after its own query. */
  query?: Record<string, string>;
}

/** One SMS to send. */
export interface SmsMessage {
  to: string;
  content: string;
  /** Sender id, which overrides the integration's `defaultSender`, even when empty. */
  sender?: string;
  passthrough?: Passthrough;
  /** Sent in the `Idempotency-Key` header when set, so the gateway can drop repeats too. */
  idempotencyKey?: string;
}

/** The SMS request to POST to the gateway. */
export interface SmsRequest {
  url: string;
  /** Header names as configured, in an object with a `null` prototype. */
  headers: Record<string, string>;
  /** The JSON body. */
  body: string;
  /** The message's recipient, for logs, which mask it. */
  to: string;
}

/**
 * Builds the headers that every request to the gateway carries: the JSON
 * content type and the credential headers.
 *
 * Each credential header is sent only when both its name and its value are
 * set. The object has a `null` prototype, so a configured header named
 * `__proto__` is an ordinary header.
 */
export function credentialHeaders(integration: Integration): Record<string, string> {
  const headers: Record<string, string> = Object.create(null);
  headers["content-type"] = "application/json";
  if (integration.apiKeyHeader !== "" && integration.apiKey !== "") {
    headers[integration.apiKeyHeader] = integration.apiKey;
  }
  if (integration.secretKeyHeader !== "" && integration.secretKey !== "") {
    headers[integration.secretKeyHeader] = integration.secretKey;
  }
  return headers;
}

/**
 * Builds the SMS request for a message: the URL with passthrough query
 * parameters, the headers without the token, and the JSON body.
 *
 * The body is `{"to", "content", "sender"}` with the passthrough body merged
 * in. The dispatcher adds the token header itself, after the token request.
 *
 * @throws InvalidArgumentError naming the passthrough field that is invalid.
 * @throws IntegrationSettingError when the message has an idempotency key
 *   and a credential header of the integration has the name of the
 *   idempotency key header.
 */
export function buildSmsRequest(integration: Integration, message: SmsMessage): SmsRequest {
  const passthrough = message.passthrough;
  const defaults = {
    to: message.to,
    content: message.content,
    sender: message.sender ?? integration.defaultSender,
  };
  const body =
    passthrough?.body === undefined
      ? JSON.stringify(defaults)
      : JSON.stringify(applyMergePatch(defaults, passthrough.body));

  const headers = credentialHeaders(integration);
  if (passthrough?.headers !== undefined) {
    addPassthroughHeaders(headers, passthrough.headers, credentialHeaderNames(integration));
  }
  if (message.idempotencyKey !== undefined && message.idempotencyKey !== "") {
    setIdempotencyKey(integration, headers, message.idempotencyKey, Object.keys(passthrough?.headers ?? {}));
  }

  const url =
    passthrough?.query === undefined ? integration.baseUrl : appendQuery(integration.baseUrl, passthrough.query);
  return { url, headers, body, to: message.to };
}

/**
 * Sets the idempotency key header, which neither a passthrough header nor a
 * credential header may also set.
 *
 * Integrations saved before the checks rejected a credential header named
 * `Idempotency-Key` can still have one. Their sends without a key carry the
 * credential as before. A send with a key fails, because the key would
 * replace the credential or be sent beside it under the same name.
 */
function setIdempotencyKey(integration: Integration, headers: Record<string, string>, key: string, passthroughNames: string[]): void {
  const credential = credentialHeaderFields(integration).find((entry) => isIdempotencyKeyHeader(entry.name));
  if (credential !== undefined) {
    throw new IntegrationSettingError(
      `Integration "${integration.id}" has ${credential.field} "${credential.name}", the header that carries ` +
        "idempotency_key, so a send with a key would mix its credential with the key. " +
        `Set ${credential.field} to the header name that the gateway expects with ConfigureIntegration, ` +
        "or leave idempotency_key empty.",
      integration.id,
      credential.field,
    );
  }
  const clash = passthroughNames.find((name) => isIdempotencyKeyHeader(name));
  if (clash !== undefined) {
    throw InvalidArgumentError.field(
      `passthrough.headers[${JSON.stringify(clash)}]`,
      `The ${IDEMPOTENCY_KEY_HEADER} header carries idempotency_key. Remove the passthrough header, or leave idempotency_key empty.`,
    );
  }
  headers[IDEMPOTENCY_KEY_HEADER] = key;
}

/** Lists the lower-case names of the headers that carry credentials. */
function credentialHeaderNames(integration: Integration): Set<string> {
  return new Set(credentialHeaderFields(integration).map((entry) => entry.name.toLowerCase()));
}

/**
 * Appends query parameters to a URL and keeps its existing query as written.
 *
 * `URLSearchParams` would re-encode the existing query (`a%20b` as `a+b`),
 * which some gateways read differently, so the new pairs are appended as text.
 */
function appendQuery(baseUrl: string, query: Record<string, string>): string {
  const pairs: string[] = [];
  for (const key of Object.keys(query)) {
    pairs.push(`${encodeQueryPart(key, key)}=${encodeQueryPart(query[key]!, key)}`);
  }
  if (pairs.length === 0) {
    return baseUrl;
  }

  const url = new URL(baseUrl);
  const extra = pairs.join("&");
  url.search = url.search.length > 1 ? `${url.search}&${extra}` : `?${extra}`;
  return url.toString();
}

function encodeQueryPart(text: string, key: string): string {
  try {
    return encodeURIComponent(text);
  } catch {
    // encodeURIComponent throws URIError on a lone UTF-16 surrogate.
    throw InvalidArgumentError.field(
      `passthrough.query[${JSON.stringify(key)}]`,
      "The query parameter contains an invalid Unicode character (a lone surrogate).",
    );
  }
}
