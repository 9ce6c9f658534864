import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { serviceNodeArgs } from "../../bench/start-command.js";
import { TEST_BUNDLE } from "./build-bundle.js";

/** How a service process ended. */
export interface ProcessExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** The service as a child process, started the way operators start it. */
export interface ServiceProcess {
  child: ChildProcess;
  baseUrl: string;
  /** Every JSON log line written so far, parsed. */
  logLines: Record<string, unknown>[];
  exited: Promise<ProcessExit>;
  /** Resolves with the first log line, earlier ones included, that matches; rejects after `timeoutMs`. */
  waitForLog(matches: (line: Record<string, unknown>) => boolean, timeoutMs: number): Promise<Record<string, unknown>>;
  /** Kills the process if it still runs and removes its data folder. */
  stop(): Promise<void>;
}

/** The node arguments of `npm start`, with the bundle that the test set-up built. */
const SERVICE_NODE_ARGS = serviceNodeArgs(TEST_BUNDLE);

/** Output of a service process that ran until it exited by itself. */
export interface FinishedServiceProcess {
  exit: ProcessExit;
  stdout: string;
  stderr: string;
}

/** Spawns the service bundle with the defaults that {@link startServiceProcess} lists, and resolves `exited` when it ends. */
function spawnService(dataDir: string, env: Record<string, string>): { child: ChildProcess; exited: Promise<ProcessExit> } {
  const child = spawn(process.execPath, SERVICE_NODE_ARGS, {
    env: { ...process.env, HOST: "127.0.0.1", PORT: "0", DATA_DIR: dataDir, LOG_LEVEL: "info", OUTBOUND_ALLOW: "127.0.0.1", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const exited = new Promise<ProcessExit>((resolve) => {
    child.once("exit", (code, signal) => resolve({ code, signal }));
  });
  return { child, exited };
}

/**
 * Runs the service bundle, with the defaults of {@link startServiceProcess},
 * until it exits by itself, as it does when it fails to start, and returns
 * its output once stdout and stderr have ended.
 */
export async function runServiceUntilExit(env: Record<string, string>): Promise<FinishedServiceProcess> {
  const dataDir = mkdtempSync(path.join(tmpdir(), "smsgateway-process-"));
  try {
    const { child } = spawnService(dataDir, env);
    let stdout = "";
    let stderr = "";
    child.stdout?.on("data", (chunk: Buffer) => (stdout += chunk.toString("utf8")));
    child.stderr?.on("data", (chunk: Buffer) => (stderr += chunk.toString("utf8")));
    // "close" comes after "exit" and after both pipes have ended, so no output is left out.
    const exit = await new Promise<ProcessExit>((resolve) => child.once("close", (code, signal) => resolve({ code, signal })));
    return { exit, stdout, stderr };
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
}

/**
 * Starts the service bundle on a free loopback port, with a data folder of
 * its own, and waits for its start-up log line, which names the address.
 * `env` adds to or replaces the defaults: `HOST=127.0.0.1`, `PORT=0`,
 * `LOG_LEVEL=info` and `OUTBOUND_ALLOW=127.0.0.1`.
 */
export async function startServiceProcess(env: Record<string, string> = {}): Promise<ServiceProcess> {
  const dataDir = mkdtempSync(path.join(tmpdir(), "smsgateway-process-"));
  const { child, exited } = spawnService(dataDir, env);
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGKILL");
      await exited;
    }
    rmSync(dataDir, { recursive: true, force: true });
  };

  const logLines: Record<string, unknown>[] = [];
  const lineListeners = new Set<(line: Record<string, unknown>) => void>();
  let stderr = "";
  child.stderr?.on("data", (chunk: Buffer) => (stderr += chunk.toString("utf8")));
  const address = new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on("line", (text) => {
      const line = JSON.parse(text) as Record<string, unknown>;
      logLines.push(line);
      lineListeners.forEach((listener) => listener(line));
      if (typeof line.address === "string") {
        resolve(line.address);
      }
    });
    void exited.then(({ code }) => reject(new Error(`the service exited with code ${code} before listening: ${stderr}`)));
  });

  const waitForLog = (matches: (line: Record<string, unknown>) => boolean, timeoutMs: number) => {
    const earlier = logLines.find(matches);
    if (earlier !== undefined) {
      return Promise.resolve(earlier);
    }
    return new Promise<Record<string, unknown>>((resolve, reject) => {
      const timer = setTimeout(() => {
        lineListeners.delete(listener);
        reject(new Error(`no matching log line within ${timeoutMs} ms; last lines: ${JSON.stringify(logLines.slice(-5))}`));
      }, timeoutMs);
      const listener = (line: Record<string, unknown>) => {
        if (matches(line)) {
          clearTimeout(timer);
          lineListeners.delete(listener);
          resolve(line);
        }
      };
      lineListeners.add(listener);
    });
  };

  try {
    return { child, baseUrl: await address, logLines, exited, waitForLog, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}
