/**
 * Stores a report in BENCHMARKS.md, between its results markers.
 */
import { readFileSync, writeFileSync } from "node:fs";

const RESULTS_START = "<!-- bench results start -->";
const RESULTS_END = "<!-- bench results end -->";

/** Replaces the results between the markers in BENCHMARKS.md. @throws Error when the markers are missing. */
export function writeResults(report: string, file = "BENCHMARKS.md"): void {
  const text = readFileSync(file, "utf8");
  const start = text.indexOf(RESULTS_START);
  const end = text.indexOf(RESULTS_END);
  if (start === -1 || end === -1) {
    throw new Error(`${file} has no ${RESULTS_START} … ${RESULTS_END} markers to write the results between`);
  }
  writeFileSync(file, `${text.slice(0, start + RESULTS_START.length)}\n${report}\n${text.slice(end)}`);
  process.stderr.write(`bench: results written to ${file}\n`);
}
