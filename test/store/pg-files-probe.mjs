// Loaded with `node --import` by pg-loading.test.ts. It prints, as a JSON
// line on stdout, how many files of the PostgreSQL driver's packages the
// process has loaded: on SIGUSR2, and again when the process exits.
import { writeSync } from "node:fs";
import { createRequire } from "node:module";

const loadedModules = createRequire(import.meta.url).cache;

function reportDriverFiles() {
  const files = Object.keys(loadedModules).filter((file) => /[\\/]node_modules[\\/]pg(-[a-z-]+)?[\\/]/.test(file));
  writeSync(1, `${JSON.stringify({ pgDriverFiles: files.length })}\n`);
}

process.on("SIGUSR2", reportDriverFiles);
process.on("exit", reportDriverFiles);
