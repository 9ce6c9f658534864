/**
 * Starts the service under test, the same way for every service process of
 * the benchmark.
 */
import { execFile } from "node:child_process";
import { closeSync, mkdirSync, openSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { promisify } from "node:util";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { IntegrationService } from "../gen/smsgateway/v1/integration_service_pb.js";
import { startNodeProcess, type BenchProcess } from "./processes.js";
import { BENCH_INTEGRATION_ID, benchIntegration } from "./request-bodies.js";
import { serviceNodeArgs } from "./start-command.js";

const execFileAsync = promisify(execFile);

/** A started service: its process, its port and the file its log goes to. */
export interface StartedService {
  process: BenchProcess;
  port: number;
  baseUrl: string;
  logFile: string;
}

/** Returns a TCP port on 127.0.0.1 that was free a moment ago. */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Bundles src/ into dist/main.js with `npm run build`, as `npm start` does first. */
export async function buildService(): Promise<void> {
  await execFileAsync("npm", ["run", "build", "--silent"]);
}

/**
 * Starts the bundle that {@link buildService} wrote as `npm start` does, with
 * plain node and the flags of its start script, with its SQLite store and log
 * in `directory`, and stores the bench integration.
 */
export async function startService(name: string, directory: string, gatewayUrl: string): Promise<StartedService> {
  mkdirSync(directory, { recursive: true });
  const port = await freePort();
  const logFile = path.join(directory, "service.log");
  const logFd = openSync(logFile, "w");
  const baseUrl = `http://127.0.0.1:${port}`;
  const integrations = createClient(IntegrationService, createConnectTransport({ baseUrl, httpVersion: "1.1" }));
  try {
    const started = await startNodeProcess(name, serviceNodeArgs(), {
      // The SSRF guard blocks loopback addresses unless OUTBOUND_ALLOW lists them, and the bench gateway is on 127.0.0.1.
      // SEND_CONCURRENCY above the highest in-flight count keeps flow control from rejecting the load.
      env: {
        HOST: "127.0.0.1",
        PORT: String(port),
        DATA_DIR: path.join(directory, "data"),
        LOG_LEVEL: "info",
        OUTBOUND_ALLOW: "127.0.0.1",
        SEND_CONCURRENCY: "1024",
      },
      stdoutFd: logFd,
      probe: async () => {
        await integrations.configureIntegration({ integration: benchIntegration(BENCH_INTEGRATION_ID, gatewayUrl), allowMissing: true });
        return { port };
      },
    });
    return { process: started, port, baseUrl, logFile };
  } finally {
    closeSync(logFd);
  }
}
