/**
 * Aggregates the benchmark's runs and writes them as Markdown tables, with
 * each figure's ratio to the reference measured in the same rounds.
 */

/**
 * One measured run of one target, counted in messages: a SendSmsBatch call
 * of 100 messages counts 100. Latencies are those of whole calls.
 */
export interface Measurement {
  messages: number;
  /** Messages of failed calls, and messages of successful calls that did not reach the gateway. */
  failures: number;
  messagesPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  cpuMsPerMessage: number;
  peakRssMb: number;
}

/** The runs of one row of the report, one per round, in round order. */
export interface Row {
  protocol: string;
  inFlight: number;
  target: string;
  /** Target whose run in the same round is the reference; none for the references themselves. */
  reference?: string;
  runs: Measurement[];
}

/** Returns the median of the finite numbers among `values`; NaN when there are none. */
export function median(values: readonly number[]): number {
  const sorted = values.filter((value) => Number.isFinite(value)).sort((a, b) => a - b);
  if (sorted.length === 0) {
    return Number.NaN;
  }
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** Ratio and difference of a row to its reference, each taken per round and then the median. */
export interface Comparison {
  throughputRatio: number;
  cpuRatio: number;
  p50DeltaMs: number;
}

/** Compares a row to the reference row of the same protocol and in-flight count, round by round. */
export function compare(row: Row, reference: Row): Comparison {
  const rounds = Math.min(row.runs.length, reference.runs.length);
  const throughput: number[] = [];
  const cpu: number[] = [];
  const p50: number[] = [];
  for (let round = 0; round < rounds; round++) {
    const mine = row.runs[round]!;
    const theirs = reference.runs[round]!;
    throughput.push(mine.messagesPerSecond / theirs.messagesPerSecond);
    cpu.push(mine.cpuMsPerMessage / theirs.cpuMsPerMessage);
    p50.push(mine.p50Ms - theirs.p50Ms);
  }
  return { throughputRatio: median(throughput), cpuRatio: median(cpu), p50DeltaMs: median(p50) };
}

/** Finds the reference row of a row, or undefined when it has none. */
export function referenceOf(row: Row, rows: readonly Row[]): Row | undefined {
  if (row.reference === undefined) {
    return undefined;
  }
  return rows.find(
    (other) => other.protocol === row.protocol && other.inFlight === row.inFlight && other.target === row.reference,
  );
}

const fixed = (value: number, digits: number) => (Number.isFinite(value) ? value.toFixed(digits) : "n/a");

/** Formats the rows as one Markdown table, medians over the rounds. */
export function resultsTable(rows: readonly Row[]): string {
  const lines = [
    "| Protocol | In flight | Target | msg/s | p50 ms | p99 ms | CPU ms/msg | Peak RSS MB | Failed | msg/s vs ref | CPU vs ref | p50 vs ref |",
    "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
  ];
  for (const row of rows) {
    const reference = referenceOf(row, rows);
    const comparison = reference === undefined ? undefined : compare(row, reference);
    const failed = row.runs.reduce((sum, run) => sum + run.failures, 0);
    lines.push(
      [
        "",
        row.protocol,
        row.inFlight,
        row.target,
        fixed(median(row.runs.map((run) => run.messagesPerSecond)), 0),
        fixed(median(row.runs.map((run) => run.p50Ms)), 2),
        fixed(median(row.runs.map((run) => run.p99Ms)), 2),
        fixed(median(row.runs.map((run) => run.cpuMsPerMessage)), 3),
        fixed(Math.max(...row.runs.map((run) => run.peakRssMb)), 0),
        failed,
        comparison === undefined ? "" : fixed(comparison.throughputRatio, 2),
        comparison === undefined ? "" : fixed(comparison.cpuRatio, 2),
        comparison === undefined ? "" : `${comparison.p50DeltaMs >= 0 ? "+" : ""}${fixed(comparison.p50DeltaMs, 2)} ms`,
        "",
      ].join(" | ").trim(),
    );
  }
  return lines.join("\n");
}

/** One target of the service and whether this run met it. */
export interface TargetCheck {
  description: string;
  measured: string;
  met: boolean;
}

/** Formats the target checks as a Markdown table. */
export function targetsTable(checks: readonly TargetCheck[]): string {
  const lines = ["| Target | Measured | Met |", "|---|---|---|"];
  for (const check of checks) {
    lines.push(`| ${check.description} | ${check.measured} | ${check.met ? "yes" : "no"} |`);
  }
  return lines.join("\n");
}
