/**
 * One measured run of one target: the load tool's figures, converted from
 * calls to messages, with the CPU time and peak memory of the process under
 * test and a check that the messages reached the gateway.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import type { LoadResult } from "./load-runners.js";
import { cpuMs, peakRssKb, resetPeakRss } from "./processes.js";
import type { Measurement } from "./report.js";

const execFileAsync = promisify(execFile);

/** One target under one protocol, and how to load it. */
export interface Entry {
  protocol: string;
  target: string;
  reference?: string;
  pid: number;
  /** Whether every successful call must reach the gateway; replays of an idempotency key do not. */
  reachesGateway: boolean;
  /** SMS in each call: 1 for SendSms, the batch size for SendSmsBatch. */
  messagesPerCall: number;
  /** Largest in-flight count at which the entry runs; every count when unset. */
  maxInFlight?: number;
  load(inFlight: number, seconds: number): Promise<LoadResult>;
}

/** Returns how many messages the bench gateway has accepted since it started. */
export async function gatewayCount(gatewayPort: number): Promise<number> {
  const response = await fetch(`http://127.0.0.1:${gatewayPort}/count`);
  return ((await response.json()) as { accepted: number }).accepted;
}

/** Runs the entry's load once and measures it, in messages. */
export async function measure(entry: Entry, inFlight: number, seconds: number, gatewayPort: number): Promise<Measurement> {
  resetPeakRss(entry.pid);
  const relayedBefore = await gatewayCount(gatewayPort);
  const cpuBefore = cpuMs(entry.pid);
  const result = await entry.load(inFlight, seconds);
  const cpuAfter = cpuMs(entry.pid);
  const relayed = (await gatewayCount(gatewayPort)) - relayedBefore;
  return toMeasurement(entry, result, { cpuMs: cpuAfter - cpuBefore, relayed, peakRssMb: peakRssKb(entry.pid) / 1024 });
}

/** Readings that the runner took around one load run. */
export interface ProcessReadings {
  /** CPU time of the process under test during the run. */
  cpuMs: number;
  /** Messages the gateway accepted during the run. */
  relayed: number;
  peakRssMb: number;
}

/**
 * Converts one load run from calls to messages. The messages of a
 * successful call that did not reach the gateway count as failed, when the
 * entry expects them to reach it. h2load counts a gRPC error as a success
 * (HTTP 200), and a batch call succeeds even when some of its messages fail.
 */
export function toMeasurement(entry: Pick<Entry, "reachesGateway" | "messagesPerCall">, result: LoadResult, readings: ProcessReadings): Measurement {
  const perCall = entry.messagesPerCall;
  const messages = result.requests * perCall;
  const succeeded = (result.requests - result.failures) * perCall;
  const unrelayed = entry.reachesGateway ? Math.max(0, succeeded - readings.relayed) : 0;
  // A run in which no call completed (a long batch call, say) has no latency or CPU per message to report.
  const completed = messages > 0;
  return {
    messages,
    failures: result.failures * perCall + unrelayed,
    messagesPerSecond: result.requestsPerSecond * perCall,
    p50Ms: completed ? result.p50Ms : Number.NaN,
    p99Ms: completed ? result.p99Ms : Number.NaN,
    cpuMsPerMessage: completed ? readings.cpuMs / messages : Number.NaN,
    peakRssMb: readings.peakRssMb,
  };
}

/** Measures the direct baseline: `bench/direct-load.ts` POSTs to the gateway and reports its own figures. */
export async function measureDirect(gatewayUrl: string, inFlight: number, seconds: number): Promise<Measurement> {
  const { stdout } = await execFileAsync(process.execPath, ["--import", "tsx", "bench/direct-load.ts", gatewayUrl, String(inFlight), String(seconds)], {
    timeout: (seconds + 60) * 1000,
  });
  const result = JSON.parse(stdout.trim().split("\n").at(-1)!) as {
    requests: number;
    failed: number;
    p50Ms: number;
    p99Ms: number;
    cpuMs: number;
    peakRssKb: number;
  };
  return {
    messages: result.requests,
    failures: result.failed,
    messagesPerSecond: result.requests / seconds,
    p50Ms: result.p50Ms,
    p99Ms: result.p99Ms,
    cpuMsPerMessage: result.cpuMs / Math.max(1, result.requests),
    peakRssMb: result.peakRssKb / 1024,
  };
}
