/**
 * `npm run bench`: measures SendSms through the service against bare
 * reference relays and a direct undici baseline, with h2load and wrk as
 * load generators, and prints (or with `--write`, stores in BENCHMARKS.md)
 * the results. See BENCHMARKS.md for what each row means.
 *
 *   BENCH_SECONDS   seconds per run (default 2)
 *   BENCH_ROUNDS    interleaved rounds per cell (default 2)
 *   BENCH_IN_FLIGHT requests in flight, comma-separated (default 1,16,64,256)
 */
import { execFile, execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { IntegrationService } from "../gen/smsgateway/v1/integration_service_pb.js";
import { checkTargets } from "./bench-targets.js";
import { runH2load, runWrk, type LoadResult } from "./load-runners.js";
import { cpuMs, peakRssKb, resetPeakRss, setTicksPerSecond, startNodeProcess, startTsProcess, type BenchProcess } from "./processes.js";
import { resultsTable, targetsTable, type Measurement, type Row } from "./report.js";
import { BENCH_INTEGRATION_ID, grpcFrame, sendSmsBytes, wrkScript } from "./request-bodies.js";
import { smokeTest } from "./smoke-test.js";
import { serviceNodeArgs } from "./start-command.js";

const execFileAsync = promisify(execFile);
const SEND_SMS_PATH = "/smsgateway.v1.SmsService/SendSms";
const GRPC_HEADERS = { "content-type": "application/grpc", te: "trailers" };
const CONNECT_HEADERS = { "content-type": "application/proto", "connect-protocol-version": "1" };
const WARM_UP_SECONDS = 1;
/** How `npm start` runs the service after `npm run build`. */
const SERVICE_NODE_ARGS = serviceNodeArgs();

interface BenchSettings {
  seconds: number;
  rounds: number;
  levels: number[];
  write: boolean;
}

/** One target under one protocol, and how to load it. */
interface Entry {
  protocol: string;
  target: string;
  reference?: string;
  pid: number;
  /** Whether every successful call must reach the gateway; replays of an idempotency key do not. */
  reachesGateway: boolean;
  load(inFlight: number, seconds: number): Promise<LoadResult>;
}

function readSettings(): BenchSettings {
  const positive = (name: string, fallback: string) => {
    const value = Number(process.env[name] ?? fallback);
    if (!Number.isInteger(value) || value < 1) {
      throw new Error(`${name} must be a whole number of at least 1, got "${process.env[name]}"`);
    }
    return value;
  };
  const levels = (process.env.BENCH_IN_FLIGHT ?? "1,16,64,256").split(",").map((text) => Number(text.trim()));
  if (levels.some((level) => !Number.isInteger(level) || level < 1)) {
    throw new Error(`BENCH_IN_FLIGHT must list whole numbers of at least 1, got "${process.env.BENCH_IN_FLIGHT}"`);
  }
  return { seconds: positive("BENCH_SECONDS", "2"), rounds: positive("BENCH_ROUNDS", "2"), levels, write: process.argv.includes("--write") };
}

/** Exits with the install command when h2load or wrk is missing. */
async function requireLoadTools(): Promise<void> {
  const missing: string[] = [];
  for (const [tool, versionFlag] of [["h2load", "--version"], ["wrk", "--version"]] as const) {
    try {
      await execFileAsync(tool, [versionFlag]);
    } catch (error) {
      // wrk prints its version with exit code 1, so only a missing binary counts.
      if ((error as NodeJS.ErrnoException).code === "ENOENT") {
        missing.push(tool);
      }
    }
  }
  if (missing.length > 0) {
    process.stderr.write(
      `bench: ${missing.join(" and ")} not found. Install the load generators with:\n` +
        "  sudo apt-get install -y nghttp2-client wrk\n",
    );
    process.exit(2);
  }
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function gatewayCount(gatewayPort: number): Promise<number> {
  const response = await fetch(`http://127.0.0.1:${gatewayPort}/count`);
  return ((await response.json()) as { accepted: number }).accepted;
}

/**
 * Starts the service as `npm start` does (it bundles src/ into dist/main.js
 * and runs that with plain node) and stores the bench integration.
 */
async function startService(workDir: string, gatewayUrl: string): Promise<{ process: BenchProcess; port: number; logFile: string }> {
  const port = await freePort();
  const logFile = path.join(workDir, "service.log");
  const logFd = openSync(logFile, "w");
  const baseUrl = `http://127.0.0.1:${port}`;
  const integrations = createClient(IntegrationService, createConnectTransport({ baseUrl, httpVersion: "1.1" }));
  try {
    await execFileAsync("npm", ["run", "build", "--silent"]);
    const started = await startNodeProcess("service", SERVICE_NODE_ARGS, {
      env: { HOST: "127.0.0.1", PORT: String(port), DATA_DIR: path.join(workDir, "data"), LOG_LEVEL: "info" },
      stdoutFd: logFd,
      probe: async () => {
        await integrations.configureIntegration({
          integration: { id: BENCH_INTEGRATION_ID, baseUrl: gatewayUrl, apiKeyHeader: "X-API-KEY", apiKey: "bench-key-0123456789", defaultSender: "Bench" },
          allowMissing: true,
        });
        return { port };
      },
    });
    return { process: started, port, logFile };
  } finally {
    closeSync(logFd);
  }
}

async function measure(entry: Entry, inFlight: number, seconds: number, gatewayPort: number): Promise<Measurement> {
  resetPeakRss(entry.pid);
  const relayedBefore = await gatewayCount(gatewayPort);
  const cpuBefore = cpuMs(entry.pid);
  const result = await entry.load(inFlight, seconds);
  const cpuAfter = cpuMs(entry.pid);
  const relayed = (await gatewayCount(gatewayPort)) - relayedBefore;

  // h2load counts a gRPC error as a success (HTTP 200), so successes that never reached the gateway count as failures.
  const succeeded = result.requests - result.failures;
  const unrelayed = entry.reachesGateway ? Math.max(0, succeeded - relayed) : 0;
  return {
    requests: result.requests,
    failures: result.failures + unrelayed,
    requestsPerSecond: result.requestsPerSecond,
    p50Ms: result.p50Ms,
    p99Ms: result.p99Ms,
    cpuMsPerMessage: (cpuAfter - cpuBefore) / Math.max(1, result.requests),
    peakRssMb: peakRssKb(entry.pid) / 1024,
  };
}

async function measureDirect(gatewayUrl: string, inFlight: number, seconds: number): Promise<Measurement> {
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
    requests: result.requests,
    failures: result.failed,
    requestsPerSecond: result.requests / seconds,
    p50Ms: result.p50Ms,
    p99Ms: result.p99Ms,
    cpuMsPerMessage: result.cpuMs / Math.max(1, result.requests),
    peakRssMb: result.peakRssKb / 1024,
  };
}

function machineDescription(): string {
  const cpus = os.cpus();
  const memoryGb = (os.totalmem() / 1024 ** 3).toFixed(1);
  return `${cpus.length} × ${cpus[0]?.model ?? "unknown CPU"}, ${memoryGb} GB memory, Linux ${os.release()}, Node ${process.version}`;
}

function loadAverage(): string {
  return os.loadavg().map((value) => value.toFixed(1)).join(" / ");
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
    const gateway = await startTsProcess("gateway", "bench/gateway.ts", ["0"]);
    processes.push(gateway);
    const gatewayPort = Number(gateway.ready.port);
    const gatewayUrl = `http://127.0.0.1:${gatewayPort}/sms`;

    const service = await startService(workDir, gatewayUrl);
    processes.push(service.process);
    const grpcRelay = await startTsProcess("grpc-js relay", "bench/relay-grpc-js.ts", [gatewayUrl]);
    processes.push(grpcRelay);
    const connectRelay = await startTsProcess("connect relay", "bench/relay-connect.ts", [gatewayUrl]);
    processes.push(connectRelay);

    const file = (name: string, contents: string | Uint8Array) => {
      const filePath = path.join(workDir, name);
      writeFileSync(filePath, contents);
      return filePath;
    };
    // h2load repeats one body, so its key runs send one key per bench run: the first call stores it and the others replay it.
    const runKey = `bench-${randomBytes(4).toString("hex")}`;
    const bodies = {
      grpc: file("grpc.bin", grpcFrame(sendSmsBytes())),
      grpcKey: file("grpc-key.bin", grpcFrame(sendSmsBytes(`${runKey}-grpc`))),
      connect: file("connect.bin", sendSmsBytes()),
      connectKey: file("connect-key.bin", sendSmsBytes(`${runKey}-connect`)),
      wrk: file("post.lua", wrkScript({ body: sendSmsBytes(), headers: CONNECT_HEADERS })),
      wrkKey: file("post-key.lua", wrkScript({ body: sendSmsBytes(), headers: CONNECT_HEADERS, keyPrefix: `${runKey}-` })),
    };

    const serviceUrl = `http://127.0.0.1:${service.port}${SEND_SMS_PATH}`;
    const grpcRelayUrl = `http://127.0.0.1:${Number(grpcRelay.ready.port)}${SEND_SMS_PATH}`;
    const relayH2Url = `http://127.0.0.1:${Number(connectRelay.ready.http2Port)}${SEND_SMS_PATH}`;
    const relayH1Url = `http://127.0.0.1:${Number(connectRelay.ready.http1Port)}${SEND_SMS_PATH}`;
    await smokeTest([
      { name: "service over gRPC", url: serviceUrl, protocol: "grpc" },
      { name: "service over Connect, HTTP/2", url: serviceUrl, protocol: "connect-h2" },
      { name: "service over Connect, HTTP/1.1", url: serviceUrl, protocol: "connect-h1" },
      { name: "grpc-js relay", url: grpcRelayUrl, protocol: "grpc" },
      { name: "connect relay over gRPC", url: relayH2Url, protocol: "grpc" },
      { name: "connect relay over HTTP/2", url: relayH2Url, protocol: "connect-h2" },
      { name: "connect relay over HTTP/1.1", url: relayH1Url, protocol: "connect-h1" },
    ]);

    const h2 = (url: string, bodyFile: string, headers: Record<string, string>) => (inFlight: number, seconds: number) =>
      runH2load({ url, inFlight, seconds, bodyFile, headers, logFile: path.join(workDir, "h2load.log") });
    const wrk = (url: string, scriptFile: string) => (inFlight: number, seconds: number) => runWrk({ url, inFlight, seconds, scriptFile });
    const servicePid = service.process.pid;
    const entries: Entry[] = [
      { protocol: "gRPC", target: "service", reference: "grpc-js relay", pid: servicePid, reachesGateway: true, load: h2(serviceUrl, bodies.grpc, GRPC_HEADERS) },
      { protocol: "gRPC", target: "service + key", reference: "grpc-js relay", pid: servicePid, reachesGateway: false, load: h2(serviceUrl, bodies.grpcKey, GRPC_HEADERS) },
      { protocol: "gRPC", target: "grpc-js relay", pid: grpcRelay.pid, reachesGateway: true, load: h2(grpcRelayUrl, bodies.grpc, GRPC_HEADERS) },
      { protocol: "gRPC", target: "connect relay", reference: "grpc-js relay", pid: connectRelay.pid, reachesGateway: true, load: h2(relayH2Url, bodies.grpc, GRPC_HEADERS) },
      { protocol: "Connect, HTTP/2", target: "service", reference: "connect relay", pid: servicePid, reachesGateway: true, load: h2(serviceUrl, bodies.connect, CONNECT_HEADERS) },
      { protocol: "Connect, HTTP/2", target: "service + key", reference: "connect relay", pid: servicePid, reachesGateway: false, load: h2(serviceUrl, bodies.connectKey, CONNECT_HEADERS) },
      { protocol: "Connect, HTTP/2", target: "connect relay", pid: connectRelay.pid, reachesGateway: true, load: h2(relayH2Url, bodies.connect, CONNECT_HEADERS) },
      { protocol: "Connect, HTTP/1.1", target: "service", reference: "connect relay", pid: servicePid, reachesGateway: true, load: wrk(serviceUrl, bodies.wrk) },
      { protocol: "Connect, HTTP/1.1", target: "service + key", reference: "connect relay", pid: servicePid, reachesGateway: false, load: wrk(serviceUrl, bodies.wrkKey) },
      { protocol: "Connect, HTTP/1.1", target: "connect relay", pid: connectRelay.pid, reachesGateway: true, load: wrk(relayH1Url, bodies.wrk) },
    ];

    process.stderr.write(`bench: warming up ${entries.length} targets for ${WARM_UP_SECONDS} s each\n`);
    for (const entry of entries) {
      await entry.load(64, WARM_UP_SECONDS);
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
    for (const inFlight of settings.levels) {
      for (const entry of entries) {
        rowOf(entry.protocol, inFlight, entry.target, entry.reference);
      }
      for (let round = 0; round < settings.rounds; round++) {
        // Alternating the order each round spreads drift of the machine evenly over targets.
        const order = round % 2 === 0 ? entries : [...entries].reverse();
        for (const entry of order) {
          process.stderr.write(`bench: ${inFlight} in flight, round ${round + 1}, ${entry.protocol}, ${entry.target}\n`);
          rowOf(entry.protocol, inFlight, entry.target).runs.push(await measure(entry, inFlight, settings.seconds, gatewayPort));
        }
        rowOf("undici direct", inFlight, "direct baseline").runs.push(await measureDirect(gatewayUrl, inFlight, settings.seconds));
      }
    }

    const servedByGrpcJs = readFileSync(service.logFile, "utf8").includes('"server":"grpc-js"');
    const command = [
      process.env.BENCH_SECONDS === undefined ? "" : `BENCH_SECONDS=${settings.seconds} `,
      process.env.BENCH_ROUNDS === undefined ? "" : `BENCH_ROUNDS=${settings.rounds} `,
      process.env.BENCH_IN_FLIGHT === undefined ? "" : `BENCH_IN_FLIGHT=${settings.levels.join(",")} `,
      "npm run bench",
    ].join("");
    const report = [
      `### Run of ${startedAt.toISOString().slice(0, 16).replace("T", " ")} UTC`,
      "",
      `- Machine: ${machineDescription()}`,
      `- Command: \`${command}\` (${settings.seconds} s per run, ${settings.rounds} rounds per cell)`,
      `- Load average (1/5/15 min) at start: ${loadAtStart}; at end: ${loadAverage()}`,
      `- Service: \`node ${SERVICE_NODE_ARGS.join(" ")}\` after \`npm run build\`, as \`npm start\` runs it, SQLite store, LOG_LEVEL=info logging to a file; gRPC calls ${servedByGrpcJs ? "were" : "were NOT"} served by grpc-js`,
      "",
      "#### Targets",
      "",
      targetsTable(checkTargets(rows)),
      "",
      "#### Results",
      "",
      resultsTable(rows),
      "",
    ].join("\n");
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

const RESULTS_START = "<!-- bench results start -->";
const RESULTS_END = "<!-- bench results end -->";

/** Replaces the results between the markers in BENCHMARKS.md. */
function writeResults(report: string): void {
  const file = "BENCHMARKS.md";
  const text = readFileSync(file, "utf8");
  const start = text.indexOf(RESULTS_START);
  const end = text.indexOf(RESULTS_END);
  if (start === -1 || end === -1) {
    throw new Error(`${file} has no ${RESULTS_START} … ${RESULTS_END} markers to write the results between`);
  }
  writeFileSync(file, `${text.slice(0, start + RESULTS_START.length)}\n${report}\n${text.slice(end)}`);
  process.stderr.write(`bench: results written to ${file}\n`);
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
