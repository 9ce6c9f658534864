/**
 * Child processes of the benchmark: starting them, waiting for their ready
 * line, and reading their CPU time and peak memory from /proc.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { parseProcStatCpuTicks, parseVmHwmKb, parseVmRssKb } from "./load-output.js";

/** A started child process and the JSON of its ready line. */
export interface BenchProcess {
  readonly name: string;
  readonly child: ChildProcess;
  readonly pid: number;
  readonly ready: Record<string, unknown>;
  stop(): Promise<void>;
}

/** Options of {@link startTsProcess}. */
export interface StartOptions {
  env?: Record<string, string>;
  /**
   * File descriptor that receives stdout. The process is then ready when
   * `probe` returns a value, because its stdout cannot be read.
   */
  stdoutFd?: number;
  probe?: () => Promise<Record<string, unknown> | undefined>;
  timeoutMs?: number;
}

/** Starts a TypeScript file with `node --import tsx` and waits until it is ready. */
export function startTsProcess(name: string, file: string, args: string[], options: StartOptions = {}): Promise<BenchProcess> {
  return startNodeProcess(name, ["--import", "tsx", file, ...args], options);
}

/** Starts `node` with these arguments and waits until the process is ready. */
export async function startNodeProcess(name: string, nodeArgs: string[], options: StartOptions = {}): Promise<BenchProcess> {
  const child = spawn(process.execPath, nodeArgs, {
    env: { ...process.env, ...options.env },
    stdio: ["ignore", options.stdoutFd ?? "pipe", "pipe"],
  });
  const stderr: string[] = [];
  child.stderr?.on("data", (chunk: Buffer) => stderr.push(chunk.toString()));
  const timeoutMs = options.timeoutMs ?? 30_000;

  const ready = await new Promise<Record<string, unknown>>((resolve, reject) => {
    let settled = false;
    const settle = (error: Error | undefined, value?: Record<string, unknown>) => {
      if (settled) {
        return;
      }
      settled = true;
      clearTimeout(timer);
      if (error === undefined) {
        resolve(value!);
      } else {
        child.kill("SIGKILL");
        reject(error);
      }
    };
    let probeError = "";
    const timer = setTimeout(() => settle(new Error(`${name} was not ready within ${timeoutMs} ms: ${probeError}${stderr.join("")}`)), timeoutMs);
    child.once("exit", (code) => settle(new Error(`${name} exited with code ${code} before it was ready: ${stderr.join("")}`)));

    if (options.probe !== undefined) {
      const probe = options.probe;
      const poll = () => {
        if (settled) {
          return;
        }
        probe().then(
          (value) => (value === undefined ? setTimeout(poll, 100) : settle(undefined, value)),
          (error: unknown) => {
            probeError = `the last probe failed with ${error instanceof Error ? error.message : String(error)}\n`;
            setTimeout(poll, 100);
          },
        );
      };
      poll();
      return;
    }
    const lines = createInterface({ input: child.stdout! });
    lines.on("line", (line) => {
      const found = jsonReadyLine(line);
      if (found !== undefined) {
        lines.removeAllListeners("line");
        settle(undefined, found);
      }
    });
  });
  // Keep reading stdout so that a full pipe never blocks the child.
  child.stdout?.resume();

  return {
    name,
    child,
    pid: child.pid!,
    ready,
    async stop() {
      if (child.exitCode !== null) {
        return;
      }
      const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

function jsonReadyLine(line: string): Record<string, unknown> | undefined {
  try {
    const parsed = JSON.parse(line) as Record<string, unknown>;
    return parsed.ready === true ? parsed : undefined;
  } catch {
    return undefined;
  }
}

/** Clock ticks per second of /proc CPU times; 100 on Linux unless configured otherwise. */
let ticksPerSecond = 100;

/** Sets the clock tick rate that {@link cpuMs} uses, as `getconf CLK_TCK` prints it. */
export function setTicksPerSecond(value: number): void {
  ticksPerSecond = value;
}

/** Returns the user plus system CPU time of a process, in milliseconds. */
export function cpuMs(pid: number): number {
  return (parseProcStatCpuTicks(readFileSync(`/proc/${pid}/stat`, "utf8")) * 1000) / ticksPerSecond;
}

/** Returns the peak resident set size of a process, in kB. */
export function peakRssKb(pid: number): number {
  return parseVmHwmKb(readFileSync(`/proc/${pid}/status`, "utf8"));
}

/** Returns the current resident set size of a process, in kB. */
export function rssKb(pid: number): number {
  return parseVmRssKb(readFileSync(`/proc/${pid}/status`, "utf8"));
}

/**
 * Resets the peak resident set size of a process to its current size, so
 * the next reading is the peak of one run. Returns false where the kernel
 * does not allow it; the peak then covers the process's whole life.
 */
export function resetPeakRss(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, "5");
    return true;
  } catch {
    return false;
  }
}
