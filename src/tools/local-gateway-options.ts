/** Command-line options of the stand-in gateway (`npm run gateway`). */
import type { LocalGatewayOptions } from "./local-gateway.js";

const DEFAULT_PORT = 9090;

export const USAGE = `Usage: npm run gateway -- [--port N] [--host ADDRESS]

Runs a stand-in SMS gateway that accepts every SMS POSTed to it and prints it.
POST /auth returns a new token at data.token, for trying token authentication.
  --port N          port to listen on, 0 for any free port (default ${DEFAULT_PORT}, or GATEWAY_PORT)
  --host ADDRESS    address to listen on (default 127.0.0.1; use ::1 for IPv6 loopback)
`;

/** The options that take a value, each with an example of one. */
const VALUE_EXAMPLES = new Map([
  ["--port", "--port 9191"],
  ["--host", "--host ::1"],
]);

/**
 * Reads the command line, then `GATEWAY_PORT` when `--port` is absent.
 *
 * @throws Error naming the option or variable that is unknown, lacks a value or has an invalid one.
 */
export function parseOptions(argv: readonly string[], environment: NodeJS.ProcessEnv): LocalGatewayOptions | "help" {
  let host = "127.0.0.1";
  let port: number | undefined;
  for (let i = 0; i < argv.length; i++) {
    const argument = argv[i] ?? "";
    if (argument === "--help" || argument === "-h") {
      return "help";
    }
    const equals = argument.indexOf("=");
    const name = equals === -1 ? argument : argument.slice(0, equals);
    const example = VALUE_EXAMPLES.get(name);
    if (example === undefined) {
      throw new Error(`unknown argument "${argument}"; use --port N and --host ADDRESS`);
    }

    // A following option is not taken as the value, so "--port --host ::1" reports the missing port.
    let value = equals === -1 ? undefined : argument.slice(equals + 1);
    const next = argv[i + 1];
    if (value === undefined && next !== undefined && !next.startsWith("--")) {
      value = next;
      i++;
    }
    if (value === undefined || value === "") {
      throw new Error(`${name} is missing its value; give one, as in ${example}`);
    }

    if (name === "--port") {
      port = parsePort(value, "--port");
    } else {
      host = value;
    }
  }

  const fromEnvironment = environment.GATEWAY_PORT?.trim() ?? "";
  port ??= fromEnvironment === "" ? DEFAULT_PORT : parsePort(fromEnvironment, "GATEWAY_PORT");
  return { host, port };
}

function parsePort(text: string, source: string): number {
  const port = /^\d{1,5}$/.test(text) ? Number(text) : Number.NaN;
  if (!(port <= 65535)) {
    throw new Error(`${source} must be a whole number from 0 to 65535 (0 picks any free port), got "${text}"`);
  }
  return port;
}
