import { DEFAULT_DATABASE_SCHEMA, DEFAULT_SQLITE_SYNCHRONOUS, SETTINGS, type Config, type Setting } from "./settings.js";

/** A configuration problem the operator must fix; the message names the setting. */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

/** Result of reading the command line: a configuration to run with, or the help text. */
export type LoadResult = { kind: "run"; config: Config } | { kind: "help"; text: string };

/**
 * Reads the configuration from flags, then environment variables, then
 * defaults, in that order of precedence.
 */
export function loadConfig(argv: readonly string[], env: NodeJS.ProcessEnv): LoadResult {
  const flags = parseFlags(argv);
  if (flags === "help") {
    return { kind: "help", text: helpText() };
  }

  const values: Record<string, unknown> = {};
  for (const setting of SETTINGS) {
    const fromFlag = flags.get(setting.flag);
    const fromEnv = env[setting.env];
    const raw = fromFlag ?? fromEnv ?? setting.defaultValue;
    let source = "default";
    if (fromFlag !== undefined) {
      source = setting.flag;
    } else if (fromEnv !== undefined) {
      source = setting.env;
    }
    values[setting.key] = parseSetting(setting, raw, source);
  }
  const config = values as unknown as Config;

  if ((config.tlsCertFile === "") !== (config.tlsKeyFile === "")) {
    throw new ConfigError("TLS_CERT_FILE and TLS_KEY_FILE must be set together, or neither for cleartext.");
  }
  if (config.retryMaxDelayMs < config.retryBaseDelayMs) {
    throw new ConfigError(
      `RETRY_MAX_DELAY_MS (${config.retryMaxDelayMs}) is below RETRY_BASE_DELAY_MS (${config.retryBaseDelayMs}); raise it or lower the base delay.`,
    );
  }
  if (config.databaseUrl === "" && config.databaseSchema !== DEFAULT_DATABASE_SCHEMA) {
    throw new ConfigError(
      `DATABASE_SCHEMA ("${config.databaseSchema}") applies only to PostgreSQL; set DATABASE_URL too, or unset DATABASE_SCHEMA for the embedded SQLite file.`,
    );
  }
  if (config.databaseUrl !== "" && config.sqliteSynchronous !== DEFAULT_SQLITE_SYNCHRONOUS) {
    throw new ConfigError(
      `SQLITE_SYNCHRONOUS ("${config.sqliteSynchronous}") applies only to the embedded SQLite file; unset it, or unset DATABASE_URL.`,
    );
  }
  return { kind: "run", config };
}

function parseSetting(setting: Setting, raw: string, source: string): unknown {
  try {
    return setting.parse(raw);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    const label = source === "default" ? `default of ${setting.env}` : source;
    throw new ConfigError(`${label}: invalid value "${raw}": ${reason}.`);
  }
}

/**
 * Parses `--name value` and `--name=value` pairs of the `known` flags (by
 * default the settings' flags); returns "help" for `--help` or `-h`.
 *
 * @throws ConfigError for an unknown flag or a flag without a value.
 */
export function parseFlags(
  argv: readonly string[],
  known: ReadonlySet<string> = new Set(SETTINGS.map((s) => s.flag)),
): Map<string, string> | "help" {
  const flags = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? "";
    if (arg === "--help" || arg === "-h") {
      return "help";
    }

    const equals = arg.indexOf("=");
    const name = equals === -1 ? arg : arg.slice(0, equals);
    if (!known.has(name)) {
      throw new ConfigError(`Unknown argument "${arg}". Run with --help to list the settings.`);
    }

    let value: string | undefined;
    if (equals !== -1) {
      value = arg.slice(equals + 1);
    } else {
      value = argv[i + 1];
      i++;
    }
    if (value === undefined) {
      throw new ConfigError(`${name} needs a value, for example ${name}=VALUE.`);
    }
    flags.set(name, value);
  }
  return flags;
}

/** Returns the `--help` text: every setting with its flag, variable, default and unit. */
export function helpText(): string {
  const lines = [
    "smsgateway: send SMS through your own gateway's REST endpoint over gRPC, Connect and gRPC-Web.",
    "",
    "Usage: npm start -- [--flag value ...]",
    "",
    "Each setting is read from its flag, else its environment variable, else the default.",
    "",
  ];
  for (const setting of SETTINGS) {
    const unit = setting.unit === "" ? "" : ` (${setting.unit})`;
    const fallback = setting.defaultValue === "" ? "unset" : setting.defaultValue;
    lines.push(`  ${setting.flag}, ${setting.env}${unit}`);
    lines.push(`      ${setting.description}`);
    lines.push(`      Default: ${fallback}`);
  }
  return lines.join("\n");
}
