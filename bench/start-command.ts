/**
 * The node command line of `npm start`, read from package.json, so that the
 * benchmark and the tests run the service with the same flags as users do.
 */
import { readFileSync } from "node:fs";

/** The bundle that `npm run build` writes and `npm start` runs. */
export const SERVICE_BUNDLE = "dist/main.js";

/**
 * Returns the arguments that `npm start` passes to node after it built the
 * bundle, with `bundle` in place of dist/main.js.
 *
 * @throws Error when the start script does not end in `exec node ... dist/main.js`.
 */
export function serviceNodeArgs(bundle = SERVICE_BUNDLE): string[] {
  const packageJson = JSON.parse(readFileSync("package.json", "utf8")) as { scripts: { start: string } };
  const script = packageJson.scripts.start;
  const command = script.slice(script.lastIndexOf("exec node ") + "exec node ".length).split(" ");
  if (!script.includes("exec node ") || command.at(-1) !== SERVICE_BUNDLE) {
    throw new Error(`package.json's start script "${script}" does not end in "exec node [flags] ${SERVICE_BUNDLE}"`);
  }
  return [...command.slice(0, -1), bundle];
}
