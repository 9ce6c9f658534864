import { createHash } from "node:crypto";

import type { JsonValue, SmsMessage } from "../dispatch/dispatcher.js";

/**
 * Returns the SHA-256 (hex) of a send request, which distinguishes a repeat
 * of the request from a different request that reuses its idempotency key.
 *
 * The hash covers the integration id, `to`, `content`, `sender` and the
 * passthrough, as canonical JSON: object keys sorted, no whitespace. A
 * missing passthrough part counts as an empty one, because both send the
 * same SMS request. The idempotency key itself is not part of the hash.
 */
export function requestHash(integrationId: string, message: SmsMessage): string {
  const request: JsonValue = {
    integration_id: integrationId,
    to: message.to,
    content: message.content,
    sender: message.sender ?? null,
    passthrough: {
      body: message.passthrough?.body ?? {},
      headers: message.passthrough?.headers ?? {},
      query: message.passthrough?.query ?? {},
    },
  };
  return createHash("sha256").update(canonicalJson(request)).digest("hex");
}

/** Writes JSON with object keys in code-unit order at every level, so equal values give equal text. */
export function canonicalJson(value: JsonValue): string {
  if (Array.isArray(value)) {
    return `[${value.map(canonicalJson).join(",")}]`;
  }
  if (value !== null && typeof value === "object") {
    const keys = Object.keys(value).sort();
    return `{${keys.map((key) => `${JSON.stringify(key)}:${canonicalJson(value[key] as JsonValue)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}
