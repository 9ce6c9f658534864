/**
 * Vitest global set-up: builds the service once with `npm run build`, so
 * that the tests which start the service as a process run the bundle that
 * `npm start` runs. It goes to its own file because the `npm start` test
 * rewrites `dist/main.js` while other tests run.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";

/** Where the set-up writes the bundle; esbuild takes the last `--outfile` given. */
export const TEST_BUNDLE = "dist/test/main.js";

export default async function buildBundle(): Promise<void> {
  await promisify(execFile)("npm", ["run", "build", "--silent", "--", `--outfile=${TEST_BUNDLE}`], { timeout: 120_000 });
}
