/**
 * The soak: loads the service for a long run while reading its resident set
 * size every second, to show whether its memory keeps growing.
 */
import { performance } from "node:perf_hooks";
import { measure, type Entry } from "./measurement.js";
import { rssKb } from "./processes.js";
import type { RssSample, SoakResult } from "./soak-summary.js";

const SOAK_IN_FLIGHT = 64;
/** Load before the sampled run, so the first window is not the service's start-up. */
const SOAK_WARM_UP_SECONDS = 5;
const SAMPLE_INTERVAL_MS = 1000;

/** Runs the entry's load for `seconds` after a warm-up, sampling the RSS of the entry's process. */
export async function runSoak(entry: Entry, seconds: number, gatewayPort: number): Promise<SoakResult> {
  await entry.load(SOAK_IN_FLIGHT, SOAK_WARM_UP_SECONDS);

  const samples: RssSample[] = [];
  const startedAt = performance.now();
  const sample = () => {
    try {
      samples.push({ elapsedMs: performance.now() - startedAt, rssKb: rssKb(entry.pid) });
    } catch {
      // The process has exited: the load run fails and reports it.
    }
  };
  sample();
  const timer = setInterval(sample, SAMPLE_INTERVAL_MS);
  try {
    const measurement = await measure(entry, SOAK_IN_FLIGHT, seconds, gatewayPort);
    return { seconds, inFlight: SOAK_IN_FLIGHT, warmUpSeconds: SOAK_WARM_UP_SECONDS, measurement, samples };
  } finally {
    clearInterval(timer);
  }
}
