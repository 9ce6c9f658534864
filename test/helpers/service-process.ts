import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
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
  /** The DATA_DIR it runs on. */
  dataDir: string;
  /** Every JSON log line written so far, parsed. */
  logLines: Record<string, unknown>[];
  exited: Promise<ProcessExit>;
  /** Resolves with the first log line, earlier ones included, that matches; rejects after `timeoutMs`. */
  waitForLog(matches: (line: Record<string, unknown>) => boolean, timeoutMs: number): Promise<Record<string, unknown>>;
  /** Kills the process if it still runs and removes its data folder, unless the caller gave DATA_DIR. */
  stop(): Promise<void>;
}

/** The node arguments of `npm start`, with the bundle that the test set-up built. */
const SERVICE_NODE_ARGS = serviceNodeArgs(TEST_BUNDLE);

/** User and group id of `nobody` on Linux, which a root test runner starts the service as when file permissions must apply. */
const NOBODY_ID = 65534;

/** Outcome of a service process that was expected to fail at start-up. */
export interface StartupOutcome {
  /** Exit code, or null when the service started listening and the helper killed it. */
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs the service bundle with `args` until it exits, as a failed start-up
 * does. A service that starts listening instead is killed, and its code is
 * null. `env` adds to or replaces `HOST=127.0.0.1`, `PORT=0` and
 * `LOG_LEVEL=info`. With `unprivileged`, a root test runner starts the
 * service as the user `nobody`, because file permissions do not apply to root.
 */
export async function runServiceUntilExit(
  args: string[],
  env: Record<string, string>,
  options: { unprivileged?: boolean } = {},
): Promise<StartupOutcome> {
  const asNobody = options.unprivileged === true && process.getuid?.() === 0;
  const child = spawn(process.execPath, [...SERVICE_NODE_ARGS, ...args], {
    env: { ...process.env, HOST: "127.0.0.1", PORT: "0", LOG_LEVEL: "info", ...env },
    stdio: ["ignore", "pipe", "pipe"],
    ...(asNobody ? { uid: NOBODY_ID, gid: NOBODY_ID } : {}),
  });
  let stdout = "";
  let stderr = "";
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString("utf8")));
  child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString("utf8")));
  createInterface({ input: child.stdout }).on("line", (text) => {
    if (text.includes('"address"')) {
      child.kill("SIGKILL");
    }
  });
  // "close" comes after stdout and stderr have ended, so the output is complete.
  const [code, signal] = (await once(child, "close")) as [number | null, NodeJS.Signals | null];
  return { code: signal === null ? code : null, stdout, stderr };
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

/** Returns a function that kills the process if it still runs and then removes `ownDataDir`, when given. */
function stopper(child: ChildProcess, exited: Promise<ProcessExit>, ownDataDir: string | undefined): () => Promise<void> {
  return async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGKILL");
      await exited;
    }
    if (ownDataDir !== undefined) {
      rmSync(ownDataDir, { recursive: true, force: true });
    }
  };
}

/** A service process that is still starting, with the log lines it has written so far. */
export interface StartingService {
  child: ChildProcess;
  logLines: Record<string, unknown>[];
  /** Resolves once the process has ended and its output has been read. */
  exited: Promise<ProcessExit>;
  /** Kills the process if it still runs and removes its data folder. */
  stop(): Promise<void>;
}

/**
 * Spawns the service bundle as {@link startServiceProcess} does, but returns
 * as soon as it writes its first log line, which comes while it starts and
 * before it listens. `env` adds to or replaces the same defaults.
 */
export async function spawnServiceUntilFirstLog(env: Record<string, string> = {}): Promise<StartingService> {
  const dataDir = mkdtempSync(path.join(tmpdir(), "smsgateway-process-"));
  const { child } = spawnService(dataDir, env);
  // "close" comes after stdout has ended, so logLines is complete once this resolves.
  const exited = new Promise<ProcessExit>((resolve) => {
    child.once("close", (code: number | null, signal: NodeJS.Signals | null) => resolve({ code, signal }));
  });
  const stop = stopper(child, exited, dataDir);
  const logLines: Record<string, unknown>[] = [];
  const firstLine = new Promise<void>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on("line", (text) => {
      logLines.push(JSON.parse(text) as Record<string, unknown>);
      resolve();
    });
    void exited.then(({ code }) => reject(new Error(`the service exited with code ${code} before it logged`)));
  });
  try {
    await firstLine;
  } catch (error) {
    await stop();
    throw error;
  }
  return { child, logLines, exited, stop };
}

/**
 * Starts the service bundle on a free loopback port and waits for its
 * start-up log line, which names the address. It runs on a data folder of
 * its own unless `env` sets DATA_DIR. `env` adds to or replaces the
 * defaults: `HOST=127.0.0.1`, `PORT=0`, `LOG_LEVEL=info` and
 * `OUTBOUND_ALLOW=127.0.0.1`.
 */
export async function startServiceProcess(env: Record<string, string> = {}): Promise<ServiceProcess> {
  const dataDir = env.DATA_DIR ?? mkdtempSync(path.join(tmpdir(), "smsgateway-process-"));
  const ownDataDir = env.DATA_DIR === undefined ? dataDir : undefined;
  const { child, exited } = spawnService(dataDir, env);
  const stop = stopper(child, exited, ownDataDir);

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
    return { child, baseUrl: await address, dataDir, logLines, exited, waitForLog, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}
