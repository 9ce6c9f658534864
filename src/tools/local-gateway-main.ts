/**
 * Runs the stand-in SMS gateway from the command line:
 *
 *   npm run gateway                  # http://127.0.0.1:9090
 *   npm run gateway -- --port 9191
 *   npm run gateway -- --help
 */
import { startLocalGateway, type LocalGatewayOptions } from "./local-gateway.js";

const USAGE = `Usage: npm run gateway -- [--port N] [--host ADDRESS]

Runs a stand-in SMS gateway that accepts every SMS POSTed to it and prints it.
  --port N          port to listen on (default 9090, or GATEWAY_PORT)
  --host ADDRESS    address to listen on (default 127.0.0.1)
`;

function parseOptions(argv: readonly string[]): LocalGatewayOptions | "help" {
  const options: LocalGatewayOptions = { host: "127.0.0.1", port: Number(process.env.GATEWAY_PORT ?? 9090) };
  for (let i = 0; i < argv.length; i++) {
    const argument = argv[i] ?? "";
    if (argument === "--help" || argument === "-h") {
      return "help";
    }
    const [name, inline] = argument.split("=", 2);
    const value = inline ?? argv[++i] ?? "";
    if (name === "--port") {
      options.port = Number(value);
    } else if (name === "--host") {
      options.host = value;
    } else {
      throw new Error(`unknown argument "${argument}"; use --port N and --host ADDRESS`);
    }
  }
  if (!Number.isInteger(options.port) || options.port < 0 || options.port > 65535) {
    throw new Error("--port must be a whole number from 0 to 65535");
  }
  return options;
}

try {
  const options = parseOptions(process.argv.slice(2));
  if (options === "help") {
    process.stdout.write(USAGE);
    process.exit(0);
  }
  const { url } = await startLocalGateway(options, (line) => process.stdout.write(`${line}\n`));
  process.stdout.write(`local SMS gateway listening on ${url} (POST ${url}/sms for messages, POST ${url}/auth for a token)\n`);
} catch (error) {
  process.stderr.write(`local gateway: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
}
