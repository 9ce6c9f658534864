/**
 * The service's performance targets, checked against one benchmark run.
 */
import { compare, type Row, type TargetCheck } from "./report.js";

/** Each target: the protocol, the in-flight count, the reference, and the test on the comparison. */
const THROUGHPUT_TARGETS = [
  { protocol: "gRPC", reference: "grpc-js relay", minimum: 0.8 },
  { protocol: "Connect, HTTP/2", reference: "connect relay", minimum: 0.9 },
  { protocol: "Connect, HTTP/1.1", reference: "connect relay", minimum: 0.9 },
];
const THROUGHPUT_IN_FLIGHT = 64;
const LATENCY_IN_FLIGHT = 1;
const MAX_P50_DELTA_MS = 0.5;
const RSS_IN_FLIGHT = 256;
const MAX_RSS_MB = 200;

/** Checks the targets whose in-flight counts the run measured. */
export function checkTargets(rows: readonly Row[]): TargetCheck[] {
  const find = (protocol: string, inFlight: number, target: string) =>
    rows.find((row) => row.protocol === protocol && row.inFlight === inFlight && row.target === target && row.runs.length > 0);
  const checks: TargetCheck[] = [];

  for (const { protocol, reference, minimum } of THROUGHPUT_TARGETS) {
    const service = find(protocol, THROUGHPUT_IN_FLIGHT, "service");
    const baseline = find(protocol, THROUGHPUT_IN_FLIGHT, reference);
    if (service !== undefined && baseline !== undefined) {
      const ratio = compare(service, baseline).throughputRatio;
      checks.push({
        description: `${protocol} msg/s at ${THROUGHPUT_IN_FLIGHT} in flight ≥ ${minimum} × ${reference}`,
        measured: `${ratio.toFixed(2)} ×`,
        met: ratio >= minimum,
      });
    }
  }

  for (const { protocol, reference } of THROUGHPUT_TARGETS) {
    const service = find(protocol, LATENCY_IN_FLIGHT, "service");
    const baseline = find(protocol, LATENCY_IN_FLIGHT, reference);
    if (service !== undefined && baseline !== undefined) {
      const delta = compare(service, baseline).p50DeltaMs;
      checks.push({
        description: `${protocol} p50 at ${LATENCY_IN_FLIGHT} in flight ≤ ${reference} + ${MAX_P50_DELTA_MS} ms`,
        measured: `${delta >= 0 ? "+" : ""}${delta.toFixed(2)} ms`,
        met: delta <= MAX_P50_DELTA_MS,
      });
    }
  }

  const serviceAtPeak = rows.filter((row) => row.inFlight === RSS_IN_FLIGHT && row.target.startsWith("service"));
  if (serviceAtPeak.length > 0) {
    const peakMb = Math.max(...serviceAtPeak.flatMap((row) => row.runs.map((run) => run.peakRssMb)));
    checks.push({
      description: `service peak RSS at ${RSS_IN_FLIGHT} in flight ≤ ${MAX_RSS_MB} MB`,
      measured: `${peakMb.toFixed(0)} MB`,
      met: peakMb <= MAX_RSS_MB,
    });
  }
  return checks;
}
