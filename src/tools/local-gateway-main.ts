/**
 * Runs the stand-in SMS gateway from the command line:
 *
 *   npm run gateway                  # http://127.0.0.1:9090
 *   npm run gateway -- --port 9191
 *   npm run gateway -- --help
 */
import { startLocalGateway } from "./local-gateway.js";
import { parseOptions, USAGE } from "./local-gateway-options.js";

try {
  const options = parseOptions(process.argv.slice(2), process.env);
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
