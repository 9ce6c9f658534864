/**
 * The direct baseline: this process POSTs the SMS JSON straight to the
 * gateway with undici, keeping IN_FLIGHT requests open for SECONDS, and
 * prints one JSON line with the count and the latency percentiles. No RPC
 * layer sits in between, so this is the most the gateway and undici allow
 * on this machine. It measures its own CPU time and peak RSS.
 *
 *   node --import tsx bench/direct-load.ts GATEWAY_URL IN_FLIGHT SECONDS
 */
import { performance } from "node:perf_hooks";
import { percentile } from "./load-output.js";
import { relaySms } from "./relay-send.js";

const gatewayUrl = process.argv[2] ?? "";
const inFlight = Number(process.argv[3] ?? "1");
const seconds = Number(process.argv[4] ?? "2");

const latenciesUs: number[] = [];
let failed = 0;
const cpuBefore = process.cpuUsage();
const endAt = performance.now() + seconds * 1000;

async function worker(): Promise<void> {
  while (performance.now() < endAt) {
    const started = performance.now();
    try {
      await relaySms(gatewayUrl, { to: "+15550100000", content: "Your code is 123456" });
      latenciesUs.push((performance.now() - started) * 1000);
    } catch {
      failed++;
    }
  }
}

await Promise.all(Array.from({ length: inFlight }, () => worker()));
const cpu = process.cpuUsage(cpuBefore);
latenciesUs.sort((a, b) => a - b);
process.stdout.write(
  `${JSON.stringify({
    requests: latenciesUs.length,
    failed,
    seconds,
    p50Ms: percentile(latenciesUs, 50) / 1000,
    p99Ms: percentile(latenciesUs, 99) / 1000,
    cpuMs: (cpu.user + cpu.system) / 1000,
    peakRssKb: process.resourceUsage().maxRSS,
  })}\n`,
);
process.exit(0);
