/**
 * The benchmark's settings, read from the environment and the command line,
 * and the check that its load generators are installed.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);

/** Settings of one `npm run bench`: what it measures and for how long. */
export interface BenchSettings {
  /** `BENCH_SECONDS`: length of one measured run. */
  seconds: number;
  /** `BENCH_ROUNDS`: interleaved rounds per cell; 0 skips the rounds, so only the soak runs. */
  rounds: number;
  /** `BENCH_IN_FLIGHT`: requests in flight of each cell. */
  levels: number[];
  /** `BENCH_SOAK_SECONDS`: length of the soak; 0 skips it. */
  soakSeconds: number;
  /** `--write`: store the report in BENCHMARKS.md. */
  write: boolean;
}

/** Reads the settings. @throws Error naming the variable that is not a valid number. */
export function readSettings(env: NodeJS.ProcessEnv = process.env, argv: readonly string[] = process.argv): BenchSettings {
  const wholeNumber = (name: string, fallback: string, minimum: number) => {
    const value = Number(env[name] ?? fallback);
    if (!Number.isInteger(value) || value < minimum) {
      throw new Error(`${name} must be a whole number of at least ${minimum}, got "${env[name]}"`);
    }
    return value;
  };
  const levels = (env.BENCH_IN_FLIGHT ?? "1,16,64,256").split(",").map((text) => Number(text.trim()));
  if (levels.some((level) => !Number.isInteger(level) || level < 1)) {
    throw new Error(`BENCH_IN_FLIGHT must list whole numbers of at least 1, got "${env.BENCH_IN_FLIGHT}"`);
  }
  return {
    seconds: wholeNumber("BENCH_SECONDS", "2", 1),
    rounds: wholeNumber("BENCH_ROUNDS", "2", 0),
    levels,
    soakSeconds: wholeNumber("BENCH_SOAK_SECONDS", "60", 0),
    write: argv.includes("--write"),
  };
}

/** Returns the command that reproduces a run with these settings, naming only the variables that were set. */
export function benchCommand(settings: BenchSettings, env: NodeJS.ProcessEnv = process.env): string {
  const values: [string, string][] = [
    ["BENCH_SECONDS", String(settings.seconds)],
    ["BENCH_ROUNDS", String(settings.rounds)],
    ["BENCH_IN_FLIGHT", settings.levels.join(",")],
    ["BENCH_SOAK_SECONDS", String(settings.soakSeconds)],
  ];
  const prefix = values.filter(([name]) => env[name] !== undefined).map(([name, value]) => `${name}=${value} `);
  return `${prefix.join("")}npm run bench`;
}

/** Exits with the install command when h2load or wrk is missing. */
export async function requireLoadTools(): Promise<void> {
  const missing: string[] = [];
  for (const [tool, versionFlag] of [["h2load", "--version"], ["wrk", "--version"]] as const) {
    try {
      await execFileAsync(tool, [versionFlag]);
    } catch (error) {
      // wrk prints its version with exit code 1, so only a missing binary counts.
      if ((error as NodeJS.ErrnoException).code === "ENOENT") {
        missing.push(tool);
      }
    }
  }
  if (missing.length > 0) {
    process.stderr.write(
      `bench: ${missing.join(" and ")} not found. Install the load generators with:\n` +
        "  sudo apt-get install -y nghttp2-client wrk\n",
    );
    process.exit(2);
  }
}
