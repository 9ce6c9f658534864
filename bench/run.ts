/**
 * `npm run bench`: measures SendSms and SendSmsBatch through the service
 * against bare reference relays and a direct undici baseline, with h2load
 * and wrk as load generators. Then it loads the service for a longer soak
 * to watch its memory. It prints the results, or with `--write` stores
 * them in BENCHMARKS.md, which explains what each row means.
 *
 *   BENCH_SECONDS      seconds per run (default 2)
 *   BENCH_ROUNDS       interleaved rounds per cell (default 2); 0 runs only the soak
 *   BENCH_IN_FLIGHT    requests in flight, comma-separated (default 1,16,64,256)
 *   BENCH_SOAK_SECONDS length of the soak (default 60); 0 skips it
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { Code, ConnectError } from "@connectrpc/connect";
import { benchEntries, serviceGrpcEntry, smokeTargets, type BenchTargets } from "./bench-entries.js";
import { readSettings, requireLoadTools, type BenchSettings } from "./bench-settings.js";
import { seedIntegrations, SEEDING_IN_FLIGHT } from "./integration-seeding.js";
import { setTicksPerSecond, startTsProcess, type BenchProcess } from "./processes.js";
import { benchIntegrationIds } from "./request-bodies.js";
import { writeResults } from "./results-file.js";
import { runRounds } from "./rounds.js";
import { loadAverage, runReport, type RoundsResult } from "./run-report.js";
import { buildService, startService } from "./service-process.js";
import { runSoak } from "./soak.js";
import type { SoakResult } from "./soak-summary.js";
import { smokeTest } from "./smoke-test.js";
import { MANY_INTEGRATIONS } from "./target-names.js";

/**
 * Starts the relays and the service with {@link MANY_INTEGRATIONS}
 * integrations, checks every target with one SendSms, and runs the rounds.
 */
async function measureRounds(
  settings: BenchSettings,
  service: BenchTargets["service"],
  gateway: { port: number; url: string },
  workDir: string,
  processes: BenchProcess[],
): Promise<RoundsResult> {
  const many = await startService(`service with ${MANY_INTEGRATIONS} integrations`, path.join(workDir, "service-many"), gateway.url);
  processes.push(many.process);
  const integrationIds = benchIntegrationIds(MANY_INTEGRATIONS);
  process.stderr.write(`bench: storing ${MANY_INTEGRATIONS} integrations, ${SEEDING_IN_FLIGHT} calls in flight\n`);
  const seeding = await seedIntegrations(many.baseUrl, gateway.url, integrationIds.slice(1));

  const grpcRelay = await startTsProcess("grpc-js relay", "bench/relay-grpc-js.ts", [gateway.url]);
  processes.push(grpcRelay);
  const connectRelay = await startTsProcess("connect relay", "bench/relay-connect.ts", [gateway.url]);
  processes.push(connectRelay);

  const targets: BenchTargets = {
    service,
    manyIntegrations: { pid: many.process.pid, port: many.port, integrationIds },
    grpcRelay: { pid: grpcRelay.pid, port: Number(grpcRelay.ready.port) },
    connectRelay: { pid: connectRelay.pid, http2Port: Number(connectRelay.ready.http2Port), http1Port: Number(connectRelay.ready.http1Port) },
  };
  await smokeTest(smokeTargets(targets));
  const rows = await runRounds(benchEntries(targets, workDir), {
    levels: settings.levels,
    rounds: settings.rounds,
    seconds: settings.seconds,
    gatewayPort: gateway.port,
    gatewayUrl: gateway.url,
  });
  return { rows, seeding };
}

async function main(): Promise<void> {
  const settings = readSettings();
  await requireLoadTools();
  setTicksPerSecond(Number(execFileSync("getconf", ["CLK_TCK"]).toString().trim()) || 100);

  const workDir = mkdtempSync(path.join(os.tmpdir(), "smsgateway-bench-"));
  const processes: BenchProcess[] = [];
  const loadAtStart = loadAverage();
  const startedAt = new Date();
  try {
    const gatewayProcess = await startTsProcess("gateway", "bench/gateway.ts", ["0"]);
    processes.push(gatewayProcess);
    const gatewayPort = Number(gatewayProcess.ready.port);
    const gateway = { port: gatewayPort, url: `http://127.0.0.1:${gatewayPort}/sms` };

    await buildService();
    const started = await startService("service", path.join(workDir, "service"), gateway.url);
    processes.push(started.process);
    const service = { pid: started.process.pid, port: started.port };

    const rounds = settings.rounds > 0 ? await measureRounds(settings, service, gateway, workDir, processes) : undefined;
    let soak: SoakResult | undefined;
    if (settings.soakSeconds > 0) {
      process.stderr.write(`bench: soak, gRPC to the service for ${settings.soakSeconds} s\n`);
      soak = await runSoak(serviceGrpcEntry(service, workDir), settings.soakSeconds, gateway.port);
    }

    const servedByGrpcJs = readFileSync(started.logFile, "utf8").includes('"server":"grpc-js"');
    const report = runReport({ settings, startedAt, loadAtStart, servedByGrpcJs, rounds, soak });
    process.stdout.write(`${report}\n`);
    if (settings.write) {
      writeResults(report);
    }
  } finally {
    for (const started of processes.reverse()) {
      await started.stop();
    }
    rmSync(workDir, { recursive: true, force: true });
  }
}

main().catch((error: unknown) => {
  let message = String(error);
  if (error instanceof ConnectError) {
    message = `${Code[error.code]}: ${error.rawMessage}`;
  } else if (error instanceof Error) {
    message = error.message;
  }
  process.stderr.write(`bench: failed: ${message}\n`);
  process.exit(1);
});
