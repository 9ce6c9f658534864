/**
 * The measured rounds: for each in-flight count, every entry runs once per
 * round, then the direct baseline.
 */
import { measure, measureDirect, type Entry } from "./measurement.js";
import type { Row } from "./report.js";

const WARM_UP_SECONDS = 1;
const WARM_UP_IN_FLIGHT = 64;

/** Options of {@link runRounds}. */
export interface RoundsOptions {
  levels: readonly number[];
  rounds: number;
  seconds: number;
  gatewayPort: number;
  gatewayUrl: string;
}

/** Warms every entry up, then runs the rounds and returns one row per protocol, in-flight count and target. */
export async function runRounds(entries: readonly Entry[], options: RoundsOptions): Promise<Row[]> {
  process.stderr.write(`bench: warming up ${entries.length} targets for ${WARM_UP_SECONDS} s each\n`);
  for (const entry of entries) {
    await entry.load(WARM_UP_IN_FLIGHT, WARM_UP_SECONDS);
  }

  const rows: Row[] = [];
  const rowOf = (protocol: string, inFlight: number, target: string, reference?: string) => {
    let row = rows.find((candidate) => candidate.protocol === protocol && candidate.inFlight === inFlight && candidate.target === target);
    if (row === undefined) {
      row = { protocol, inFlight, target, reference, runs: [] };
      rows.push(row);
    }
    return row;
  };
  for (const inFlight of options.levels) {
    const running = entries.filter((entry) => inFlight <= (entry.maxInFlight ?? Infinity));
    for (const entry of running) {
      rowOf(entry.protocol, inFlight, entry.target, entry.reference);
    }
    for (let round = 0; round < options.rounds; round++) {
      // Alternating the order each round spreads drift of the machine evenly over targets.
      const order = round % 2 === 0 ? running : [...running].reverse();
      for (const entry of order) {
        process.stderr.write(`bench: ${inFlight} in flight, round ${round + 1}, ${entry.protocol}, ${entry.target}\n`);
        rowOf(entry.protocol, inFlight, entry.target).runs.push(await measure(entry, inFlight, options.seconds, options.gatewayPort));
      }
      rowOf("undici direct", inFlight, "direct baseline").runs.push(await measureDirect(options.gatewayUrl, inFlight, options.seconds));
    }
  }
  return rows;
}
