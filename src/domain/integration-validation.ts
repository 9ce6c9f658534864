import type { FieldViolation } from "../errors.js";
import { MAX_CONCURRENT_SENDS, MAX_SENDS_PER_SECOND, MIN_SENDS_PER_SECOND } from "../flow/flow-limits.js";
import { headerNameProblem, headerValueProblem } from "./http-header.js";
import { credentialHeaderFields, type IntegrationFields } from "./integration.js";
import { longerThan } from "./text-length.js";

/** 1 to 63 characters of a-z, 0-9, `-` and `_`, starting with a letter or digit. */
const ID_PATTERN = /^[a-z0-9][a-z0-9_-]{0,62}$/;

const MAX_URL_LENGTH = 2048;
const MAX_SECRET_LENGTH = 4096;
const MAX_SENDER_LENGTH = 64;
const MAX_DISPLAY_NAME_LENGTH = 200;
const MAX_PATH_LENGTH = 256;
/** 30 days: a longer-lived token belongs in api_key. */
const MAX_TOKEN_LIFETIME_SECONDS = 30 * 24 * 60 * 60;

/** Returns why `id` is not a valid integration id, or null when it is. */
export function integrationIdProblem(id: string): string | null {
  if (ID_PATTERN.test(id)) {
    return null;
  }
  return `"${truncate(id)}" is not a valid id: use 1 to 63 characters of a-z, 0-9, "-" and "_", starting with a letter or digit`;
}

/**
 * Checks a complete set of integration fields, after defaults and updates
 * are applied. Field paths are prefixed with `prefix` (for example
 * `integration.`), so the caller sees the path in its own request.
 */
export function validateIntegration(fields: IntegrationFields, prefix: string): FieldViolation[] {
  const violations: FieldViolation[] = [];
  const add = (field: string, description: string | null) => {
    if (description !== null) {
      violations.push({ field: prefix + field, description });
    }
  };

  add("display_name", displayNameProblem(fields.displayName));
  add("base_url", urlProblem(fields.baseUrl, "required", "the full http:// or https:// URL of the gateway endpoint that receives each SMS"));
  add("api_key_header", requiredHeaderNameProblem(fields.apiKeyHeader));
  add("api_key", secretProblem(fields.apiKey, true, "required: the value that the gateway expects in api_key_header"));
  add("default_sender", senderProblem(fields.defaultSender));
  add("id_path", dotPathProblem(fields.idPath));
  add("date_path", dotPathProblem(fields.datePath));
  add("max_concurrent_sends", concurrencyLimitProblem(fields.maxConcurrentSends));
  add("max_sends_per_second", rateLimitProblem(fields.maxSendsPerSecond));

  if (fields.secretKeyHeader !== "" || fields.secretKey !== "") {
    add("secret_key_header", requiredHeaderNameProblem(fields.secretKeyHeader, "required when secret_key is set"));
    add(
      "secret_key",
      secretProblem(fields.secretKey, true, "required when secret_key_header is set; to remove the secret key, leave secret_key_header empty too"),
    );
  }

  if (fields.authenticateByToken) {
    add(
      "auth_url",
      urlProblem(fields.authUrl, "required when authenticate_by_token is set", "the full http:// or https:// URL that returns a token"),
    );
    add("token_key", requiredHeaderNameProblem(fields.tokenKey, "required when authenticate_by_token is set"));
  }
  add("token_lifetime_seconds", tokenLifetimeProblem(fields.tokenLifetimeSeconds));

  const names = credentialHeaderFields(fields);
  for (let i = 1; i < names.length; i++) {
    const current = names[i]!;
    const earlier = names.slice(0, i).find((entry) => entry.name.toLowerCase() === current.name.toLowerCase());
    if (earlier !== undefined) {
      add(current.field, `"${current.name}" is already used by ${prefix}${earlier.field}; each credential needs its own header`);
    }
  }
  return violations;
}

function urlProblem(value: string, missing: string, expected: string): string | null {
  if (value === "") {
    return `${missing}: ${expected}`;
  }
  if (longerThan(value, MAX_URL_LENGTH)) {
    return `longer than ${MAX_URL_LENGTH} characters`;
  }
  // The URL parser drops tabs and line breaks, so the stored text would differ from the URL requested.
  if (/\p{Cc}/u.test(value)) {
    return "contains control characters such as tabs or line breaks; remove them";
  }

  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return portProblem(value) ?? zoneIdProblem(value) ?? "is not an absolute URL; write it as https://host/path";
  }
  if (url.port === "0") {
    return PORT_MESSAGE;
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    return `scheme "${url.protocol.slice(0, -1)}" is not supported; use http or https`;
  }
  if (url.username !== "" || url.password !== "") {
    return "must not contain a user name or password; put credentials in the API-key headers";
  }
  if (url.hash !== "") {
    return "must not contain a fragment (#...), which is never sent to the server";
  }
  return null;
}

/**
 * The port of a URL: what follows the host and a colon, up to the path,
 * query, fragment or end. Neither host nor port may contain `@`, so the
 * password of a user-info part is never read as a port.
 */
const URL_PORT = /^[a-z][a-z\d+.-]*:\/\/(?:[^@/?#]*@)?(?:\[[^\]/?#]*\]|[^[:/?#@]*):([^/?#@]*)(?:[/?#]|$)/i;

/** The host of a URL as an IPv6 address in brackets with a zone id, such as `[fe80::1%25eth0]`. */
const URL_ZONE_ID = /^[a-z][a-z\d+.-]*:\/\/(?:[^@/?#]*@)?\[[^\]/?#]*%/i;

/** Returns why a URL that the URL parser rejected has an invalid host when it has a zone id, else null. */
function zoneIdProblem(value: string): string | null {
  return URL_ZONE_ID.test(value) ? "has an IPv6 zone id (after %), which a URL cannot carry; write the address without it" : null;
}

/**
 * Returns why the port of a URL that the URL parser rejected is invalid, or
 * null when the port is not the reason. The parser gives no reason for an
 * out-of-range port.
 */
function portProblem(value: string): string | null {
  const port = URL_PORT.exec(value)?.[1];
  if (port === undefined || port === "") {
    return null;
  }
  if (!/^\d+$/.test(port) || Number(port) < 1 || Number(port) > 65535) {
    return PORT_MESSAGE;
  }
  return null;
}

/**
 * The message of an invalid port. Neither it nor the message of a URL that
 * does not parse quotes the URL: `https://user:secret` reads as a host and a
 * port, so no part of a rejected URL is known not to be a password.
 */
const PORT_MESSAGE = "has an invalid port; use a port from 1 to 65535, or none for the scheme's default";

function displayNameProblem(value: string): string | null {
  if (longerThan(value, MAX_DISPLAY_NAME_LENGTH)) {
    return `longer than ${MAX_DISPLAY_NAME_LENGTH} characters`;
  }
  if (/\p{Cc}/u.test(value)) {
    return "contains control characters such as line breaks; write it on one line";
  }
  return null;
}

function tokenLifetimeProblem(seconds: number | null | undefined): string | null {
  if (seconds === null || seconds === undefined) {
    return null;
  }
  if (seconds < 0 || seconds > MAX_TOKEN_LIFETIME_SECONDS) {
    return `must be from 0 to ${MAX_TOKEN_LIFETIME_SECONDS} seconds, or unset for the service default`;
  }
  return null;
}

function requiredHeaderNameProblem(name: string, missing = "required"): string | null {
  if (name === "") {
    return `${missing}: the name of an HTTP header, for example X-API-KEY`;
  }
  return headerNameProblem(name);
}

function secretProblem(value: string, required: boolean, missing = "required"): string | null {
  if (value === "") {
    return required ? missing : null;
  }
  if (value.length > MAX_SECRET_LENGTH) {
    return `longer than ${MAX_SECRET_LENGTH} characters`;
  }
  return headerValueProblem(value);
}

function senderProblem(value: string): string | null {
  if (value.trim() === "") {
    return "required: the sender id shown on messages, for example a phone number or a name";
  }
  if (longerThan(value, MAX_SENDER_LENGTH)) {
    return `longer than ${MAX_SENDER_LENGTH} characters`;
  }
  if (/\p{Cc}/u.test(value)) {
    return "contains control characters";
  }
  return null;
}

function concurrencyLimitProblem(value: number): string | null {
  if (Number.isInteger(value) && value >= 0 && value <= MAX_CONCURRENT_SENDS) {
    return null;
  }
  return (
    `${value} is out of range: use 0 for the service default (SEND_CONCURRENCY), ` +
    `or a whole number of sends in flight from 1 to ${MAX_CONCURRENT_SENDS}`
  );
}

function rateLimitProblem(value: number): string | null {
  if (value === 0 || (value >= MIN_SENDS_PER_SECOND && value <= MAX_SENDS_PER_SECOND)) {
    return null;
  }
  const problem = Number.isFinite(value) ? "is out of range" : "is not a finite number";
  return (
    `${value} ${problem}: use 0 for the service default (SEND_RATE_PER_SECOND), ` +
    `or a number of sends per second from ${MIN_SENDS_PER_SECOND} to ${MAX_SENDS_PER_SECOND}`
  );
}

/** Checks a dot path such as `data.id` or `messages.0.id`. */
export function dotPathProblem(path: string): string | null {
  if (longerThan(path, MAX_PATH_LENGTH)) {
    return `longer than ${MAX_PATH_LENGTH} characters`;
  }
  if (path.split(".").some((segment) => segment === "")) {
    return `"${truncate(path)}" has an empty segment; write keys separated by single dots, for example data.id`;
  }
  return null;
}

function truncate(value: string): string {
  return value.length > 80 ? `${value.slice(0, 80)}...` : value;
}
