import { createHash, randomBytes } from "node:crypto";

import { splitConfigEntries } from "./config-entries.js";

/** Prefix of generated API keys, so a leaked key is easy to recognise and search for. */
export const API_KEY_PREFIX = "smsk_";

/** Random bytes in a generated key: 256 bits, so a plain SHA-256 of it is safe to store. */
const API_KEY_RANDOM_BYTES = 32;

/** The permissions an API key can hold. */
export const SCOPES = ["integrations:read", "integrations:write", "sms:send"] as const;

export type Scope = (typeof SCOPES)[number];

/** 1 to 64 letters, digits, `.`, `_` or `-`; the name is logged on every call. */
const NAME_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;
const SHA256_HEX_PATTERN = /^[0-9a-f]{64}$/i;

/** One configured API key: its name, its scopes and the SHA-256 of the key. */
export interface ApiKeyEntry {
  readonly name: string;
  readonly scopes: ReadonlySet<Scope>;
  /** SHA-256 of the key's UTF-8 bytes, 32 bytes. */
  readonly hash: Buffer;
}

/** Returns whether a text is one of the {@link SCOPES}. */
export function isScope(text: string): text is Scope {
  return (SCOPES as readonly string[]).includes(text);
}

/**
 * Parses scopes separated by `+` or `,`, such as `sms:send+integrations:read`.
 *
 * @throws Error naming the unknown scope and listing the known ones.
 */
export function parseScopes(text: string): Scope[] {
  const scopes: Scope[] = [];
  for (const part of text.split(/[+,]/).map((scope) => scope.trim())) {
    if (!isScope(part)) {
      throw new Error(`unknown scope "${part.slice(0, 40)}"; use ${SCOPES.join(", ")}`);
    }
    if (!scopes.includes(part)) {
      scopes.push(part);
    }
  }
  return scopes;
}

/** Returns the SHA-256 of a key, as stored in the configuration. */
export function hashApiKey(key: string): Buffer {
  return createHash("sha256").update(key, "utf8").digest();
}

/** Generates a new API key: `smsk_` and 43 base64url characters (256 random bits). */
export function generateApiKey(): string {
  return API_KEY_PREFIX + randomBytes(API_KEY_RANDOM_BYTES).toString("base64url");
}

/** Formats the configuration entry of a key: `name:scope+scope:sha256hex`. */
export function formatApiKeyEntry(name: string, scopes: readonly Scope[], hash: Buffer): string {
  return `${name}:${scopes.join("+")}:${hash.toString("hex")}`;
}

/** Returns why a key name is invalid, or null when it is valid. */
export function apiKeyNameProblem(name: string): string | null {
  return NAME_PATTERN.test(name) ? null : `name "${name.slice(0, 70)}" is invalid; use 1 to 64 letters, digits, ".", "_" or "-"`;
}

/**
 * Parses `name:scope+scope:sha256hex` entries separated by commas or line
 * breaks; lines starting with `#` are comments. The name
 * ends at the first `:` and the hash starts after the last one, so the
 * scopes between them keep their own colons.
 *
 * @param source names the setting or file in error messages.
 * @throws Error naming the entry and what is wrong with it.
 */
export function parseApiKeys(text: string, source: string): ApiKeyEntry[] {
  const entries: ApiKeyEntry[] = [];
  const lines = splitConfigEntries(text);

  for (const [index, line] of lines.entries()) {
    const where = `${source}: entry ${index + 1}`;
    const first = line.indexOf(":");
    const last = line.lastIndexOf(":");
    if (first === -1 || first === last) {
      throw new Error(`${where} is not name:scope+scope:sha256hex (npm run create-api-key prints one)`);
    }

    const name = line.slice(0, first);
    const nameProblem = apiKeyNameProblem(name);
    if (nameProblem !== null) {
      throw new Error(`${where}: ${nameProblem}`);
    }
    const hex = line.slice(last + 1);
    if (!SHA256_HEX_PATTERN.test(hex)) {
      throw new Error(`${where} ("${name}"): the hash must be 64 hexadecimal digits, the SHA-256 of the key`);
    }
    let scopes: Scope[];
    try {
      scopes = parseScopes(line.slice(first + 1, last));
    } catch (error) {
      throw new Error(`${where} ("${name}"): ${(error as Error).message}`);
    }

    const hash = Buffer.from(hex, "hex");
    const clash = entries.find((entry) => entry.name === name || entry.hash.equals(hash));
    if (clash !== undefined) {
      const what = clash.name === name ? "name" : "key hash";
      throw new Error(`${where} ("${name}") repeats the ${what} of "${clash.name}"; give each key its own name and key`);
    }
    entries.push({ name, scopes: new Set(scopes), hash });
  }
  return entries;
}
