/**
 * The service's performance targets, checked against one benchmark run.
 */
import { compare, type Row, type TargetCheck } from "./report.js";
import { PROTOCOLS, TARGETS } from "./target-names.js";

/** Each target: the protocol, the in-flight count, the reference, and the test on the comparison. */
const THROUGHPUT_TARGETS = [
  { protocol: PROTOCOLS.grpc, reference: TARGETS.grpcRelay, minimum: 0.8 },
  { protocol: PROTOCOLS.connectHttp2, reference: TARGETS.connectRelay, minimum: 0.9 },
  { protocol: PROTOCOLS.connectHttp1, reference: TARGETS.connectRelay, minimum: 0.9 },
];
const THROUGHPUT_IN_FLIGHT = 64;
const LATENCY_IN_FLIGHT = 1;
const MAX_P50_DELTA_MS = 0.5;
const RSS_IN_FLIGHT = 256;
const MAX_RSS_MB = 200;
/** Rows of the peak RSS target: SendSms to the first service process, which stores one integration. */
const RSS_TARGETS: readonly string[] = [TARGETS.service, TARGETS.serviceWithKey];
/**
 * Idempotency keys: msg/s with a new key in every request, which only wrk
 * sends, against the same requests without a key.
 */
const KEY_PROTOCOL = PROTOCOLS.connectHttp1;
const MIN_KEY_THROUGHPUT = 0.8;
/** Many integrations: CPU per message of the second service process against the first. */
const MAX_MANY_INTEGRATIONS_CPU = 1.1;

/** Checks the targets whose in-flight counts the run measured. */
export function checkTargets(rows: readonly Row[]): TargetCheck[] {
  const find = (protocol: string, inFlight: number, target: string) =>
    rows.find((row) => row.protocol === protocol && row.inFlight === inFlight && row.target === target && row.runs.length > 0);
  const checks: TargetCheck[] = [];

  for (const { protocol, reference, minimum } of THROUGHPUT_TARGETS) {
    const service = find(protocol, THROUGHPUT_IN_FLIGHT, TARGETS.service);
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
    const service = find(protocol, LATENCY_IN_FLIGHT, TARGETS.service);
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

  const withKey = find(KEY_PROTOCOL, THROUGHPUT_IN_FLIGHT, TARGETS.serviceWithKey);
  const withoutKey = find(KEY_PROTOCOL, THROUGHPUT_IN_FLIGHT, TARGETS.service);
  if (withKey !== undefined && withoutKey !== undefined) {
    const ratio = compare(withKey, withoutKey).throughputRatio;
    checks.push({
      description: `${KEY_PROTOCOL} msg/s with a new idempotency key per request (${TARGETS.serviceWithKey}) at ${THROUGHPUT_IN_FLIGHT} in flight ≥ ${MIN_KEY_THROUGHPUT} × ${TARGETS.service}`,
      measured: `${ratio.toFixed(2)} ×`,
      met: ratio >= MIN_KEY_THROUGHPUT,
    });
  }

  for (const protocol of Object.values(PROTOCOLS)) {
    const many = find(protocol, THROUGHPUT_IN_FLIGHT, TARGETS.manyIntegrations);
    const service = find(protocol, THROUGHPUT_IN_FLIGHT, TARGETS.service);
    if (many !== undefined && service !== undefined) {
      const ratio = compare(many, service).cpuRatio;
      checks.push({
        description: `${protocol} CPU ms/msg of ${TARGETS.manyIntegrations} at ${THROUGHPUT_IN_FLIGHT} in flight ≤ ${MAX_MANY_INTEGRATIONS_CPU} × ${TARGETS.service}`,
        measured: `${ratio.toFixed(2)} ×`,
        met: ratio <= MAX_MANY_INTEGRATIONS_CPU,
      });
    }
  }

  const serviceAtPeak = rows.filter((row) => row.inFlight === RSS_IN_FLIGHT && RSS_TARGETS.includes(row.target));
  if (serviceAtPeak.length > 0) {
    const peakMb = Math.max(...serviceAtPeak.flatMap((row) => row.runs.map((run) => run.peakRssMb)));
    checks.push({
      description: `service peak RSS at ${RSS_IN_FLIGHT} in flight ≤ ${MAX_RSS_MB} MB`,
      measured: `${peakMb.toFixed(1)} MB`,
      met: peakMb <= MAX_RSS_MB,
    });
  }
  return checks;
}
