/**
 * Generates an API key for callers and prints its API_KEYS entry:
 *
 *   npm run create-api-key -- --name ci --scopes sms:send
 */
import { runCreateApiKeyCommand } from "../security/create-api-key-command.js";

process.exitCode = runCreateApiKeyCommand(
  process.argv.slice(2),
  (text) => process.stdout.write(`${text}\n`),
  (text) => process.stderr.write(`${text}\n`),
);
