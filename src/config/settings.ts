import { isIP } from "node:net";

import { MAX_CONCURRENT_SENDS, MAX_SENDS_PER_SECOND, MIN_SENDS_PER_SECOND } from "../flow/flow-limits.js";

/**
 * Every setting of the service, in one table: its environment variable, its
 * flag, its default and unit. `--help` and the README's settings table are
 * written from this list.
 */

import { OutboundAllowList } from "../outbound/allow-list.js";
import { parseAllowedOrigins } from "../server/cors.js";
import { DEFAULT_POSTGRES_SCHEMA, MAX_SCHEMA_NAME_BYTES } from "../store/postgres-database.js";
import { SQLITE_SYNCHRONOUS_MODES, type SqliteSynchronous } from "../store/sqlite-database.js";

/** Schema of DATABASE_SCHEMA when unset, the only one allowed with SQLite. */
export const DEFAULT_DATABASE_SCHEMA = DEFAULT_POSTGRES_SCHEMA;

/** SQLITE_SYNCHRONOUS when unset, the only value allowed with PostgreSQL. */
export const DEFAULT_SQLITE_SYNCHRONOUS: SqliteSynchronous = "normal";

export type LogLevel = "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";

/** The service's configuration after parsing, with units in the names. */
export interface Config {
  /**
   * Name of each setting in start-up messages: its flag when the value came
   * from the command line, else its environment variable.
   */
  names: SettingNames;
  host: string;
  port: number;
  dataDir: string;
  /** Empty selects the embedded SQLite file under `dataDir`. */
  databaseUrl: string;
  logLevel: LogLevel;
  /** Both set or both empty; when set, the port serves TLS only. */
  tlsCertFile: string;
  tlsKeyFile: string;
  sendTimeoutMs: number;
  maxReplyBytes: number;
  maxRequestBytes: number;
  /** Time a new connection has to send its first request's headers before it is closed. */
  firstRequestTimeoutMs: number;
  gatewayConnections: number;
  gatewayKeepAliveMs: number;
  /** Networks and host names that the SSRF guard lets through; empty by default. */
  outboundAllow: OutboundAllowList;
  sendConcurrency: number;
  /** 0 means no rate limit. */
  sendRatePerSecond: number;
  /** 0 turns the circuit breaker off. */
  circuitFailureThreshold: number;
  circuitOpenMs: number;
  circuitHalfOpenProbes: number;
  /** `keyId:base64key` entries, comma-separated, the last one used for writes; empty when unset. */
  encryptionKeys: string;
  /** File with the same entries as `encryptionKeys`; empty when unset. */
  encryptionKeysFile: string;
  /** `name:scope+scope:sha256hex` entries, comma-separated; empty when unset. */
  apiKeys: string;
  /** File with the same entries as `apiKeys`; empty when unset. */
  apiKeysFile: string;
  /** Time calls in progress may take to finish after SIGTERM or SIGINT. */
  shutdownGraceMs: number;
  /** Origins allowed to call from a browser; `*` for any, empty for no CORS headers. */
  corsAllowedOrigins: string[];
  sendMaxAttempts: number;
  sendAttemptTimeoutMs: number;
  retryBaseDelayMs: number;
  retryMaxDelayMs: number;
  retryAfterMaxMs: number;
  idempotencyTtlSeconds: number;
  tokenLifetimeSeconds: number;
  /** Largest number of messages in one SendSmsBatch call. */
  batchMaxMessages: number;
  /** Maximum messages of one batch in flight at once, further capped by the integration's concurrency limit. */
  batchConcurrency: number;
  /** PostgreSQL schema of the tables; `public` unless set, and only `public` without `databaseUrl`. */
  databaseSchema: string;
  /** SQLite `synchronous` mode of the embedded file; only `normal` with `databaseUrl`. */
  sqliteSynchronous: SqliteSynchronous;
}

/** Name of a setting's value in {@link Config}. */
export type SettingKey = Exclude<keyof Config, "names">;

/** For each setting, the flag or environment variable that start-up messages name. */
export type SettingNames = Readonly<Record<SettingKey, string>>;

/** One setting: where it is read from, its default, and how it parses. */
export interface Setting {
  key: SettingKey;
  env: string;
  flag: string;
  /** Default as the user would write it; empty means unset. */
  defaultValue: string;
  /** Unit of the value, empty when it has none. */
  unit: string;
  description: string;
  /** True when the value may contain a password, so messages leave it out. */
  secret?: boolean;
  parse(raw: string): Config[SettingKey];
}

const LOG_LEVELS: readonly LogLevel[] = ["fatal", "error", "warn", "info", "debug", "trace", "silent"];

/** Parses a whole number in [min, max], or throws a message that names the range. */
function integerIn(min: number, max: number): (raw: string) => number {
  return (raw) => {
    const value = Number(raw);
    if (!/^\d+$/.test(raw.trim()) || !Number.isSafeInteger(value) || value < min || value > max) {
      throw new Error(`expected a whole number from ${min} to ${max}`);
    }
    return value;
  };
}

/** Parses 0 (no limit) or a decimal rate from MIN_SENDS_PER_SECOND to MAX_SENDS_PER_SECOND. */
function sendRate(raw: string): number {
  const value = Number(raw);
  if (!/^\d+(\.\d+)?$/.test(raw.trim()) || (value !== 0 && (value < MIN_SENDS_PER_SECOND || value > MAX_SENDS_PER_SECOND))) {
    throw new Error(`expected 0 for no limit, or a number from ${MIN_SENDS_PER_SECOND} to ${MAX_SENDS_PER_SECOND}`);
  }
  return value;
}

function text(raw: string): string {
  return raw.trim();
}

/** A host name: dot-separated labels of letters, digits, hyphens and underscores, with an optional final dot. */
const HOST_NAME = /^[a-z0-9_][a-z0-9_-]{0,62}(\.[a-z0-9_][a-z0-9_-]{0,62})*\.?$/i;

/** Parses the address to listen on: an IP address without brackets, or a host name. */
function listenHost(raw: string): string {
  const value = raw.trim();
  if (isIP(value) === 0 && !HOST_NAME.test(value)) {
    throw new Error("expected an IP address such as 127.0.0.1, 0.0.0.0 or :: (without brackets), or a host name, without scheme or port");
  }
  return value;
}

function folder(raw: string): string {
  const value = raw.trim();
  if (value === "") {
    throw new Error("expected a folder path; leave the setting out for the default");
  }
  return value;
}

/** Parses a PostgreSQL URL. Its messages leave the URL out, because it may contain a password. */
function databaseUrl(raw: string): string {
  const value = raw.trim();
  if (value === "") {
    return value;
  }
  if (!/^postgres(ql)?:\/\//i.test(value)) {
    const scheme = /^[a-z][a-z0-9+.-]*:/i.exec(value)?.[0];
    const found = scheme === undefined ? "it has no scheme" : `its scheme is ${scheme}`;
    throw new Error(`${found}; expected a postgres:// or postgresql:// URL, or nothing for the embedded SQLite file`);
  }
  if (!URL.canParse(value)) {
    if (/@\//.test(value)) {
      throw new Error(
        "it is not a valid URL, because a user name or password needs a host after it. For a Unix socket, " +
          "leave the host empty and pass the socket folder and the credentials as parameters, as in " +
          "postgresql:///database?host=/var/run/postgresql&user=name&password=secret",
      );
    }
    throw new Error(
      "it is not a valid URL; expected postgres://user:password@host:5432/database, with special characters in the password percent-encoded",
    );
  }
  return value;
}

function databaseSchema(raw: string): string {
  const value = raw.trim();
  const bytes = Buffer.byteLength(value);
  if (bytes === 0 || bytes > MAX_SCHEMA_NAME_BYTES) {
    throw new Error(`expected a schema name of 1 to ${MAX_SCHEMA_NAME_BYTES} bytes`);
  }
  return value;
}

/** Returns a parser that accepts one of `values`, in any case and with spaces around it. */
function oneOf<T extends string>(values: readonly T[]): (raw: string) => T {
  return (raw) => {
    const value = raw.trim().toLowerCase();
    const found = values.find((candidate) => candidate === value);
    if (found === undefined) {
      throw new Error(`expected one of ${values.join(", ")}`);
    }
    return found;
  };
}

export const SETTINGS: readonly Setting[] = [
  {
    key: "host",
    env: "HOST",
    flag: "--host",
    defaultValue: "127.0.0.1",
    unit: "",
    description: "Address to listen on. Use 0.0.0.0 or :: to accept connections from other hosts.",
    parse: listenHost,
  },
  {
    key: "port",
    env: "PORT",
    flag: "--port",
    defaultValue: "8080",
    unit: "",
    description: "TCP port for gRPC, Connect and gRPC-Web over HTTP/1.1 and HTTP/2. 0 picks a free port.",
    parse: integerIn(0, 65535),
  },
  {
    key: "dataDir",
    env: "DATA_DIR",
    flag: "--data-dir",
    defaultValue: "./data",
    unit: "",
    description:
      "Folder of the embedded SQLite database, its lock file and the generated key file, created with mode 0700 when missing. " +
      "An existing folder keeps its mode, with a warning when other users may access it. " +
      "The database file is created with mode 0600, and an existing one gets the same warning. " +
      "One service process at a time may use it; a second one exits with code 2.",
    parse: folder,
  },
  {
    key: "databaseUrl",
    env: "DATABASE_URL",
    flag: "--database-url",
    defaultValue: "",
    unit: "",
    description: "PostgreSQL URL (postgres://user@host:5432/db). When set, integrations are stored there instead of in DATA_DIR, so replicas share them.",
    secret: true,
    parse: databaseUrl,
  },
  {
    key: "logLevel",
    env: "LOG_LEVEL",
    flag: "--log-level",
    defaultValue: "info",
    unit: "",
    description: `Minimum level of the JSON log lines on stdout: ${LOG_LEVELS.join(", ")}.`,
    parse: oneOf(LOG_LEVELS),
  },
  {
    key: "tlsCertFile",
    env: "TLS_CERT_FILE",
    flag: "--tls-cert-file",
    defaultValue: "",
    unit: "",
    description: "PEM certificate chain. With TLS_KEY_FILE, the port serves TLS with ALPN for h2 and http/1.1.",
    parse: text,
  },
  {
    key: "tlsKeyFile",
    env: "TLS_KEY_FILE",
    flag: "--tls-key-file",
    defaultValue: "",
    unit: "",
    description: "PEM private key of TLS_CERT_FILE.",
    parse: text,
  },
  {
    key: "sendTimeoutMs",
    env: "SEND_TIMEOUT_MS",
    flag: "--send-timeout-ms",
    defaultValue: "10000",
    unit: "ms",
    description: "Total time for one send, token request included. A shorter caller deadline wins.",
    parse: integerIn(1, 600_000),
  },
  {
    key: "maxReplyBytes",
    env: "MAX_REPLY_BYTES",
    flag: "--max-reply-bytes",
    defaultValue: "1048576",
    unit: "bytes",
    description: "Largest gateway reply body that is read; a longer one is cut off there.",
    parse: integerIn(1024, 64 * 1024 * 1024),
  },
  {
    key: "maxRequestBytes",
    env: "MAX_REQUEST_BYTES",
    flag: "--max-request-bytes",
    defaultValue: "4194304",
    unit: "bytes",
    description: "Largest RPC request message accepted; larger ones fail with RESOURCE_EXHAUSTED. A SendSmsBatch of 10000 messages of 160 characters with idempotency keys is about 2.2 MB.",
    parse: integerIn(1024, 64 * 1024 * 1024),
  },
  {
    key: "firstRequestTimeoutMs",
    env: "FIRST_REQUEST_TIMEOUT_MS",
    flag: "--first-request-timeout-ms",
    defaultValue: "60000",
    unit: "ms",
    description:
      "Time a new connection has to send its first request's headers before it is closed, counted from the connection (for TLS, from the end of the handshake). " +
      "A cleartext HTTP/1.1 connection gets this time for its first bytes and again for its headers, and a connection to the TLS port gets it for its first bytes and its TLS handshake together. " +
      "It also limits the headers of every later HTTP/1.1 request. Node checks the HTTP/1.1 limits every 30 s, or every FIRST_REQUEST_TIMEOUT_MS when that is shorter.",
    // The 1 s floor leaves time for clients that wait a round trip for the server's SETTINGS
    // frame before their first request, as grpc-js does. Node 20 rejects a headersTimeout above
    // its requestTimeout of 300 s.
    parse: integerIn(1_000, 300_000),
  },
  {
    key: "gatewayConnections",
    env: "GATEWAY_CONNECTIONS",
    flag: "--gateway-connections",
    defaultValue: "128",
    unit: "connections",
    description: "Maximum open connections to one gateway origin; further sends wait for a free one.",
    parse: integerIn(1, 10_000),
  },
  {
    key: "gatewayKeepAliveMs",
    env: "GATEWAY_KEEPALIVE_MS",
    flag: "--gateway-keepalive-ms",
    defaultValue: "4000",
    unit: "ms",
    description: "How long an idle connection to a gateway stays open for reuse, unless the gateway asks for less.",
    parse: integerIn(1, 600_000),
  },
  {
    key: "outboundAllow",
    env: "OUTBOUND_ALLOW",
    flag: "--outbound-allow",
    defaultValue: "",
    unit: "",
    description:
      "Comma-separated CIDRs and host names that base_url and auth_url may reach although the SSRF guard blocks them, for gateways on private networks, for example 10.0.0.0/8,sms.internal,127.0.0.1. A host name entry also allows every address it resolves to.",
    parse: (raw) => OutboundAllowList.parse(raw),
  },
  {
    key: "sendConcurrency",
    env: "SEND_CONCURRENCY",
    flag: "--send-concurrency",
    defaultValue: "64",
    unit: "sends",
    description: "Maximum sends in flight per integration whose max_concurrent_sends is 0. A further SendSms fails fast with RESOURCE_EXHAUSTED, and a further message of a SendSmsBatch call waits for a slot.",
    parse: integerIn(1, MAX_CONCURRENT_SENDS),
  },
  {
    key: "sendRatePerSecond",
    env: "SEND_RATE_PER_SECOND",
    flag: "--send-rate-per-second",
    defaultValue: "0",
    unit: "sends/s",
    description: "Maximum sends per second per integration whose max_sends_per_second is 0, with bursts of one second's worth; 0 means no limit.",
    parse: sendRate,
  },
  {
    key: "circuitFailureThreshold",
    env: "CIRCUIT_FAILURE_THRESHOLD",
    flag: "--circuit-failure-threshold",
    defaultValue: "5",
    unit: "failures",
    description: "Consecutive gateway failures (5xx, 408, connection failures, timeouts) that open an integration's circuit; 0 turns the breaker off.",
    parse: integerIn(0, 10_000),
  },
  {
    key: "circuitOpenMs",
    env: "CIRCUIT_OPEN_MS",
    flag: "--circuit-open-ms",
    defaultValue: "30000",
    unit: "ms",
    description: "How long an open circuit rejects every send with UNAVAILABLE before letting probe sends through.",
    parse: integerIn(1, 3_600_000),
  },
  {
    key: "circuitHalfOpenProbes",
    env: "CIRCUIT_HALF_OPEN_PROBES",
    flag: "--circuit-half-open-probes",
    defaultValue: "1",
    unit: "sends",
    description: "Probe sends let through at once after the cool-down; a success closes the circuit, a failure opens it again.",
    parse: integerIn(1, 10_000),
  },
  {
    key: "encryptionKeys",
    env: "ENCRYPTION_KEYS",
    flag: "--encryption-keys",
    defaultValue: "",
    unit: "",
    description: "Keys that encrypt the stored gateway secrets, as comma-separated keyId:base64key entries of 32-byte keys. The last one encrypts new writes.",
    parse: text,
  },
  {
    key: "encryptionKeysFile",
    env: "ENCRYPTION_KEYS_FILE",
    flag: "--encryption-keys-file",
    defaultValue: "",
    unit: "",
    description: "File of ENCRYPTION_KEYS entries, one per line or comma-separated. Without either setting, SQLite uses DATA_DIR/encryption-keys, created on first start.",
    parse: text,
  },
  {
    key: "apiKeys",
    env: "API_KEYS",
    flag: "--api-keys",
    defaultValue: "",
    unit: "",
    description: "Callers' API keys, as comma-separated name:scope+scope:sha256hex entries (npm run create-api-key prints one). Unset turns caller authentication off, which is allowed only on a loopback HOST.",
    parse: text,
  },
  {
    key: "apiKeysFile",
    env: "API_KEYS_FILE",
    flag: "--api-keys-file",
    defaultValue: "",
    unit: "",
    description: "File of API_KEYS entries, one per line or comma-separated.",
    parse: text,
  },
  {
    key: "shutdownGraceMs",
    env: "SHUTDOWN_GRACE_MS",
    flag: "--shutdown-grace-ms",
    defaultValue: "20000",
    unit: "ms",
    description: "On SIGTERM or SIGINT, how long calls in progress may take to finish; then they are cancelled and storage closes. After a signal during start-up, how long the start-up may still take.",
    parse: integerIn(0, 600_000),
  },
  {
    key: "corsAllowedOrigins",
    env: "CORS_ALLOWED_ORIGINS",
    flag: "--cors-allowed-origins",
    defaultValue: "",
    unit: "",
    description: "Comma-separated origins that browsers may call the API from (https://app.example.com), or * for any; needs API_KEYS. Unset sends no CORS headers.",
    parse: parseAllowedOrigins,
  },
  {
    key: "sendMaxAttempts",
    env: "SEND_MAX_ATTEMPTS",
    flag: "--send-max-attempts",
    defaultValue: "3",
    unit: "attempts",
    description: "Maximum SMS requests for one send, the first included; 1 turns retries off.",
    parse: integerIn(1, 10),
  },
  {
    key: "sendAttemptTimeoutMs",
    env: "SEND_ATTEMPT_TIMEOUT_MS",
    flag: "--send-attempt-timeout-ms",
    defaultValue: "5000",
    unit: "ms",
    description: "Time one SMS request may take when the send has an idempotency key, so a stalled attempt leaves time for a retry. Without a key an attempt may use the whole send time.",
    parse: integerIn(1, 600_000),
  },
  {
    key: "retryBaseDelayMs",
    env: "RETRY_BASE_DELAY_MS",
    flag: "--retry-base-delay-ms",
    defaultValue: "200",
    unit: "ms",
    description: "Backoff before the first retry; it doubles for each further retry, and each wait is a random time up to it (full jitter).",
    parse: integerIn(0, 60_000),
  },
  {
    key: "retryMaxDelayMs",
    env: "RETRY_MAX_DELAY_MS",
    flag: "--retry-max-delay-ms",
    defaultValue: "2000",
    unit: "ms",
    description: "Largest backoff before a retry. At least RETRY_BASE_DELAY_MS.",
    parse: integerIn(0, 600_000),
  },
  {
    key: "retryAfterMaxMs",
    env: "RETRY_AFTER_MAX_MS",
    flag: "--retry-after-max-ms",
    defaultValue: "5000",
    unit: "ms",
    description: "Longest Retry-After wait the service honours itself; a gateway that asks for longer gets no retry, the caller sees its Retry-After, and after a 429 a batch starts no further message.",
    parse: integerIn(0, 600_000),
  },
  {
    key: "idempotencyTtlSeconds",
    env: "IDEMPOTENCY_TTL_SECONDS",
    flag: "--idempotency-ttl-seconds",
    defaultValue: "86400",
    unit: "s",
    description: "How long the outcome of a send with an idempotency key is kept and replayed to repeats of the request.",
    parse: integerIn(60, 30 * 24 * 60 * 60),
  },
  {
    key: "tokenLifetimeSeconds",
    env: "TOKEN_LIFETIME_SECONDS",
    flag: "--token-lifetime-seconds",
    defaultValue: "0",
    unit: "s",
    description: "How long a token from auth_url is reused when neither the auth reply (expires_in, a JWT exp) nor the integration (token_lifetime_seconds) sets it. 0 fetches a token for every send.",
    parse: integerIn(0, 30 * 24 * 60 * 60),
  },
  {
    key: "batchMaxMessages",
    env: "BATCH_MAX_MESSAGES",
    flag: "--batch-max-messages",
    defaultValue: "10000",
    unit: "messages",
    description: "Largest number of messages in one SendSmsBatch call; a larger batch fails with INVALID_ARGUMENT. MAX_REQUEST_BYTES must fit the batch too.",
    parse: integerIn(1, 100_000),
  },
  {
    key: "batchConcurrency",
    env: "BATCH_CONCURRENCY",
    flag: "--batch-concurrency",
    defaultValue: "16",
    unit: "sends",
    description: "Maximum messages of one SendSmsBatch call in flight at once. The integration's own concurrency limit (max_concurrent_sends, else SEND_CONCURRENCY) less one, the slot left to SendSms, caps it further; at a limit of 1 the batch uses the one slot.",
    parse: integerIn(1, MAX_CONCURRENT_SENDS),
  },
  {
    key: "databaseSchema",
    env: "DATABASE_SCHEMA",
    flag: "--database-schema",
    defaultValue: DEFAULT_DATABASE_SCHEMA,
    unit: "",
    description: "PostgreSQL schema of the service's tables, created by the service when missing (npm run reencrypt rejects a missing one); case-sensitive. Every replica of one deployment uses the same schema, and deployments that share a database each use their own. Only with DATABASE_URL.",
    parse: databaseSchema,
  },
  {
    key: "sqliteSynchronous",
    env: "SQLITE_SYNCHRONOUS",
    flag: "--sqlite-synchronous",
    defaultValue: DEFAULT_SQLITE_SYNCHRONOUS,
    unit: "",
    description:
      "When the embedded SQLite file syncs to disk: normal syncs at each WAL checkpoint, so a power loss (not a crash of the process) can undo the last commits; full syncs every commit, which blocks the event loop for each commit. Only without DATABASE_URL.",
    parse: oneOf(SQLITE_SYNCHRONOUS_MODES),
  },
];

/** Names every setting by its environment variable, as messages name a setting left at its default. */
export function environmentNames(): SettingNames {
  return Object.fromEntries(SETTINGS.map((setting) => [setting.key, setting.env])) as Record<SettingKey, string>;
}
