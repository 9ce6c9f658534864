/**
 * Re-encrypts every stored gateway secret under the newest encryption key,
 * with the same settings as the service:
 *
 *   ENCRYPTION_KEYS=old:...,new:... npm run reencrypt
 *
 * Safe to run while the service runs; see `src/security/reencrypt-secrets.ts`.
 */
import pino from "pino";

import { runReencryptCommand } from "../security/reencrypt-command.js";

const exitCode = await runReencryptCommand(process.argv.slice(2), process.env, {
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`),
  logs: pino.destination({ dest: 2, sync: true }),
});
process.exitCode = exitCode;
