import { closestFlag } from "./closest-flag.js";
import {
  DEFAULT_DATABASE_SCHEMA,
  DEFAULT_SQLITE_SYNCHRONOUS,
  SETTINGS,
  type Config,
  type Setting,
  type SettingKey,
} from "./settings.js";

/**
 * A configuration problem the operator must fix. The message names the
 * setting as the operator gave it (from `Config.names`) and what it accepts.
 */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

/** Result of reading the command line: a configuration to run with, or the help text. */
export type LoadResult = { kind: "run"; config: Config } | { kind: "help"; text: string };

/**
 * Reads the configuration from flags, then environment variables, then
 * defaults, in that order of precedence.
 *
 * @param read the settings to read, by default every one. A program that
 *   uses only some of them, such as `npm run reencrypt`, accepts only their
 *   flags and gets the defaults of the others, whatever the environment sets.
 */
export function loadConfig(argv: readonly string[], env: NodeJS.ProcessEnv, read: readonly Setting[] = SETTINGS): LoadResult {
  const flags = parseFlags(argv, new Set(read.map((setting) => setting.flag)));
  if (flags === "help") {
    return { kind: "help", text: helpText() };
  }

  // Only this loop has the source of each value, so it records each
  // setting's name in `config.names` for the messages of later checks.
  const names: Record<string, string> = {};
  const values: Record<string, unknown> = {};
  for (const setting of SETTINGS) {
    const isRead = read.includes(setting);
    const fromFlag = flags.get(setting.flag);
    const given = isRead ? (fromFlag ?? env[setting.env]) : undefined;
    names[setting.key] = fromFlag === undefined ? setting.env : setting.flag;
    const label = given === undefined ? `default of ${setting.env}` : names[setting.key]!;
    values[setting.key] = parseSetting(setting, given ?? setting.defaultValue, label);
  }
  const config = { ...values, names } as unknown as Config;
  checkCombinations(config);
  return { kind: "run", config };
}

/** Parses one value. The message names it by `label`. */
function parseSetting(setting: Setting, raw: string, label: string): unknown {
  try {
    return setting.parse(raw);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    const value = setting.secret === true ? "invalid value (not shown, as it may contain a password)" : `invalid value "${raw}"`;
    throw new ConfigError(`${label}: ${value}: ${reason}.`);
  }
}

/** Checks the settings that depend on each other. */
function checkCombinations(config: Config): void {
  const { names } = config;
  if ((config.tlsCertFile === "") !== (config.tlsKeyFile === "")) {
    const [set, unset]: [SettingKey, SettingKey] = config.tlsCertFile === "" ? ["tlsKeyFile", "tlsCertFile"] : ["tlsCertFile", "tlsKeyFile"];
    throw new ConfigError(`${names[set]} is set without ${bothNames(unset)}; set both for TLS, or neither for cleartext.`);
  }
  if (config.retryMaxDelayMs < config.retryBaseDelayMs) {
    throw new ConfigError(
      `${names.retryMaxDelayMs} (${config.retryMaxDelayMs}) is below ${names.retryBaseDelayMs} (${config.retryBaseDelayMs}); ` +
        "expected a maximum delay at least as long as the base delay.",
    );
  }
  if (config.databaseUrl === "" && config.databaseSchema !== DEFAULT_DATABASE_SCHEMA) {
    throw new ConfigError(
      `${names.databaseSchema} ("${config.databaseSchema}") applies only to PostgreSQL; set ${bothNames("databaseUrl")} too, ` +
        `or leave ${names.databaseSchema} out for the embedded SQLite file.`,
    );
  }
  if (config.databaseUrl !== "" && config.sqliteSynchronous !== DEFAULT_SQLITE_SYNCHRONOUS) {
    throw new ConfigError(
      `${names.sqliteSynchronous} ("${config.sqliteSynchronous}") applies only to the embedded SQLite file; ` +
        `leave it out, or leave ${names.databaseUrl} out to use that file.`,
    );
  }
}

/** Names a setting that is not set both ways: its variable, then its flag. */
function bothNames(key: SettingKey): string {
  const setting = SETTINGS.find((candidate) => candidate.key === key)!;
  return `${setting.env} (${setting.flag})`;
}

/**
 * Parses `--name value` and `--name=value` pairs of the `known` flags (by
 * default the settings' flags); returns "help" for `--help` or `-h`.
 *
 * @throws ConfigError for an unknown flag, naming the closest known flag
 *   when one is close, for a value without a flag, which it does not
 *   print, or for a flag without a value.
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
      const suggestion = closestFlag(name, [...known, "--help"]);
      const didYouMean = suggestion === undefined ? "" : ` Did you mean ${suggestion}?`;
      // A value stays out of the message, because it may be a key. That is the value of `--name=value`,
      // or an argument without a leading dash, such as the second key of `--api-keys ops:K1 ops:K2`.
      const problem = arg.startsWith("-")
        ? `Unknown argument "${equals === -1 ? arg : `${name}=...`}".`
        : `Argument ${i + 1} is a value without a flag. Write it after its flag, as --name value or --name=value.`;
      throw new ConfigError(`${problem}${didYouMean} Run with --help to list the settings.`);
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
    ...settingsHelp(SETTINGS),
  ];
  return lines.join("\n");
}

/** Returns the help lines of `settings`: for each, its flag, variable and unit, what it sets, and its default. */
export function settingsHelp(settings: readonly Setting[]): string[] {
  const lines: string[] = [];
  for (const setting of settings) {
    const unit = setting.unit === "" ? "" : ` (${setting.unit})`;
    const fallback = setting.defaultValue === "" ? "unset" : setting.defaultValue;
    lines.push(`  ${setting.flag}, ${setting.env}${unit}`);
    lines.push(`      ${setting.description}`);
    lines.push(`      Default: ${fallback}`);
  }
  return lines;
}
