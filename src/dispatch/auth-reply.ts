import { isLosslessNumber } from "lossless-json";

import { describeJsonValue, isJsonObject, parseJsonLossless } from "./json-value.js";
import { isHeaderValue } from "../domain/http-header.js";
import { bodyText, type BodyStart } from "./read-body.js";
import { buildBodyExcerpt, REDACTED, type BodyExcerpt } from "./redact.js";

/**
 * Maximum length of a token, in characters, that the service sends. Node.js
 * and nginx take request headers of 16 KiB and 8 KiB by default. And a failed
 * send reads and searches its error reply for every form of the token, so a
 * token as long as the auth reply (up to `MAX_REPLY_BYTES`) would make each
 * failed send read and search megabytes.
 */
export const MAX_TOKEN_LENGTH = 8192;

/** The token from a 2xx auth reply, or why the reply has none. */
export type AuthReply = { token: string; expiresInSeconds?: number } | { problem: string };

/**
 * Reads the token at `data.<tokenKey>` from a 2xx reply to the token request.
 *
 * `tokenKey` is one key, even when it contains dots. A string token is used
 * as is and a number token digit-exact. An empty token or one that cannot be
 * sent as a header value is a problem, as are a token longer than
 * {@link MAX_TOKEN_LENGTH} and a reply larger than `maxBytes`.
 * The problem text completes the sentence "The token reply ...".
 */
export function readAuthReply(reply: BodyStart, tokenKey: string, maxBytes: number): AuthReply {
  if (!reply.complete) {
    return { problem: `is larger than ${maxBytes} bytes` };
  }
  let root: unknown;
  try {
    root = parseJsonLossless(bodyText(reply));
  } catch {
    return { problem: "is not JSON" };
  }

  const data = isJsonObject(root) && Object.hasOwn(root, "data") ? root["data"] : undefined;
  if (!isJsonObject(data)) {
    return { problem: `has no object at data, so no token at data.${tokenKey}` };
  }
  if (!Object.hasOwn(data, tokenKey)) {
    return { problem: `has no token at data.${tokenKey}` };
  }

  const value = data[tokenKey];
  let token: string;
  if (typeof value === "string") {
    token = value;
  } else if (isLosslessNumber(value)) {
    token = value.value;
  } else {
    return { problem: `has ${describeJsonValue(value)} at data.${tokenKey} instead of a string or number token` };
  }

  if (token === "") {
    return { problem: `has an empty token at data.${tokenKey}` };
  }
  if (token.length > MAX_TOKEN_LENGTH) {
    return { problem: `has a token at data.${tokenKey} of ${token.length} characters, more than the ${MAX_TOKEN_LENGTH} that the service sends` };
  }
  if (!isHeaderValue(token)) {
    return { problem: `has a token at data.${tokenKey} with characters that cannot be sent in a header` };
  }
  const expiresInSeconds = readExpiresIn(data) ?? readExpiresIn(root);
  return expiresInSeconds === undefined ? { token } : { token, expiresInSeconds };
}

/**
 * Reads `expires_in` (seconds, as in OAuth 2.0 token replies) from an
 * object: a number or a numeric string, 0 or more. Returns `undefined` when
 * it is missing or not such a value, so that the token's lifetime comes
 * from elsewhere.
 */
function readExpiresIn(container: unknown): number | undefined {
  if (!isJsonObject(container) || !Object.hasOwn(container, "expires_in")) {
    return undefined;
  }
  const value = container["expires_in"];
  let text: string;
  if (isLosslessNumber(value)) {
    text = value.value;
  } else if (typeof value === "string") {
    text = value.trim();
  } else {
    return undefined;
  }
  const seconds = Number(text);
  return text !== "" && Number.isFinite(seconds) && seconds >= 0 ? seconds : undefined;
}

/**
 * Builds the body excerpt of a 2xx token reply that gave no usable token.
 *
 * Such a reply may contain the gateway's token under a key other than
 * `token_key`, which the service cannot recognise, and a caller with only
 * the `sms:send` scope gets the excerpt. So every string and number of a
 * JSON reply becomes `"[REDACTED]"`, which keeps the keys that an operator
 * needs to set `token_key`, and a reply that is not JSON shows none of its text.
 */
export function authReplyExcerpt(reply: BodyStart, forms: readonly string[]): BodyExcerpt {
  const withheld = { text: "", truncated: reply.bytes.length > 0 || !reply.complete };
  if (!reply.complete) {
    return withheld;
  }
  try {
    const masked = JSON.stringify(maskedValues(JSON.parse(bodyText(reply))));
    return buildBodyExcerpt(Buffer.from(masked), true, forms);
  } catch {
    // Not JSON, or nested too deeply for the recursion below.
    return withheld;
  }
}

function maskedValues(value: unknown): unknown {
  if (typeof value === "string" || typeof value === "number") {
    return REDACTED;
  }
  if (Array.isArray(value)) {
    return value.map(maskedValues);
  }
  if (isJsonObject(value)) {
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, maskedValues(item)]));
  }
  return value;
}
