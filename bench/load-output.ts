/**
 * Parsers for what the load tools and /proc print. They are pure, so the
 * tests check them on recorded output.
 */

/** Totals of one h2load run, from its summary. */
export interface H2loadSummary {
  /** Requests completed in the measured period. */
  done: number;
  /** Requests with a 2xx or 3xx status. */
  succeeded: number;
  failed: number;
  errored: number;
  requestsPerSecond: number;
}

/** Reads the `finished in` and `requests:` lines of h2load's summary. */
export function parseH2loadSummary(output: string): H2loadSummary {
  const finished = /finished in [\d.]+\w+, ([\d.]+) req\/s/.exec(output);
  const requests = /requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored/.exec(output);
  if (finished === null || requests === null) {
    throw new Error(`h2load output has no summary:\n${output}`);
  }
  return {
    requestsPerSecond: Number(finished[1]),
    done: Number(requests[1]),
    succeeded: Number(requests[2]),
    failed: Number(requests[3]),
    errored: Number(requests[4]),
  };
}

/**
 * Reads the response times, in microseconds, from an h2load `--log-file`
 * (tab-separated: start time, HTTP status, microseconds to the end of the
 * response), sorted ascending.
 */
export function parseH2loadLog(log: string): number[] {
  const times: number[] = [];
  for (const line of log.split("\n")) {
    const columns = line.split("\t");
    if (columns.length >= 3) {
      times.push(Number(columns[2]));
    }
  }
  return times.sort((a, b) => a - b);
}

/** Totals of one wrk run with `--latency`. */
export interface WrkSummary {
  requests: number;
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  /** Responses with a status other than 2xx or 3xx. */
  non2xx: number;
  /** Connect, read, write and timeout errors together. */
  socketErrors: number;
}

/** Reads wrk's `--latency` output. */
export function parseWrkOutput(output: string): WrkSummary {
  const rate = /Requests\/sec:\s+([\d.]+)/.exec(output);
  const total = /(\d+) requests in/.exec(output);
  const p50 = /^\s*50%\s+([\d.]+)(us|ms|s)\s*$/m.exec(output);
  const p99 = /^\s*99%\s+([\d.]+)(us|ms|s)\s*$/m.exec(output);
  if (rate === null || total === null || p50 === null || p99 === null) {
    throw new Error(`wrk output has no latency distribution:\n${output}`);
  }

  const errors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(output);
  return {
    requests: Number(total[1]),
    requestsPerSecond: Number(rate[1]),
    p50Ms: toMilliseconds(Number(p50[1]), p50[2]!),
    p99Ms: toMilliseconds(Number(p99[1]), p99[2]!),
    non2xx: Number(/Non-2xx or 3xx responses: (\d+)/.exec(output)?.[1] ?? "0"),
    socketErrors: errors === null ? 0 : errors.slice(1).reduce((sum, count) => sum + Number(count), 0),
  };
}

function toMilliseconds(value: number, unit: string): number {
  if (unit === "us") {
    return value / 1000;
  }
  return unit === "s" ? value * 1000 : value;
}

/** Returns the p-th percentile (nearest rank) of values sorted ascending; 0 for none. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) {
    return 0;
  }
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

/**
 * Reads user plus system CPU time, in clock ticks, from `/proc/<pid>/stat`.
 * The fields are counted after the last `)`, because the command name in
 * parentheses may contain spaces.
 */
export function parseProcStatCpuTicks(stat: string): number {
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // After the name, field 3 (state) is index 0, so utime (14) and stime (15) are 11 and 12.
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) {
    throw new Error(`unexpected /proc stat line: ${stat}`);
  }
  return utime + stime;
}

/** Reads the peak resident set size (`VmHWM`), in kB, from `/proc/<pid>/status`. */
export function parseVmHwmKb(status: string): number {
  return parseStatusKb(status, "VmHWM");
}

/** Reads the current resident set size (`VmRSS`), in kB, from `/proc/<pid>/status`. */
export function parseVmRssKb(status: string): number {
  return parseStatusKb(status, "VmRSS");
}

function parseStatusKb(status: string, field: string): number {
  const match = new RegExp(`^${field}:\\s+(\\d+) kB$`, "m").exec(status);
  if (match === null) {
    throw new Error(`/proc status has no ${field} line`);
  }
  return Number(match[1]);
}
