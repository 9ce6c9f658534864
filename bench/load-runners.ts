/**
 * Runs h2load and wrk and returns what one run measured.
 */
import { execFile } from "node:child_process";
import { readFileSync, rmSync } from "node:fs";
import { promisify } from "node:util";
import { parseH2loadLog, parseH2loadSummary, parseWrkOutput, percentile } from "./load-output.js";

const run = promisify(execFile);

/** The figures of one load run. */
export interface LoadResult {
  /** Responses in the measured period, failed ones included. */
  requests: number;
  /** Responses that were not a success (HTTP status, reset, timeout). */
  failures: number;
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
}

/** Options of {@link runH2load}. */
export interface H2loadOptions {
  url: string;
  inFlight: number;
  seconds: number;
  bodyFile: string;
  headers: Record<string, string>;
  /** Scratch file for the per-request log, removed afterwards. */
  logFile: string;
}

/**
 * Splits requests in flight over HTTP/2 connections: one connection up to 4
 * in flight, else 4 connections with the streams spread evenly.
 */
export function h2loadConnections(inFlight: number): { clients: number; streams: number } {
  const clients = inFlight < 4 ? 1 : 4;
  return { clients, streams: Math.ceil(inFlight / clients) };
}

/** Runs h2load for `seconds` and reads its summary and per-request log. */
export async function runH2load(options: H2loadOptions): Promise<LoadResult> {
  const { clients, streams } = h2loadConnections(options.inFlight);
  const args = ["-c", String(clients), "-m", String(streams), "-D", String(options.seconds), "-d", options.bodyFile];
  for (const [name, value] of Object.entries(options.headers)) {
    args.push("-H", `${name}: ${value}`);
  }
  args.push("--log-file", options.logFile, options.url);

  const { stdout } = await run("h2load", args, { timeout: (options.seconds + 60) * 1000, maxBuffer: 16 * 1024 * 1024 });
  const summary = parseH2loadSummary(stdout);
  const times = parseH2loadLog(readFileSync(options.logFile, "utf8"));
  rmSync(options.logFile, { force: true });

  return {
    requests: summary.done,
    failures: summary.done - summary.succeeded + summary.errored,
    requestsPerSecond: summary.requestsPerSecond,
    p50Ms: percentile(times, 50) / 1000,
    p99Ms: percentile(times, 99) / 1000,
  };
}

/** Options of {@link runWrk}. */
export interface WrkOptions {
  url: string;
  inFlight: number;
  seconds: number;
  scriptFile: string;
  /** Arguments that wrk passes to the script's `init` function. */
  scriptArgs?: readonly string[];
}

/** Runs wrk with one thread and one connection per request in flight. */
export async function runWrk(options: WrkOptions): Promise<LoadResult> {
  const args = [
    "-t", "1", "-c", String(options.inFlight), "-d", `${options.seconds}s`, "--timeout", "10s", "--latency",
    "-s", options.scriptFile, options.url,
  ];
  if (options.scriptArgs !== undefined) {
    args.push("--", ...options.scriptArgs);
  }
  const { stdout } = await run("wrk", args, { timeout: (options.seconds + 60) * 1000 });
  const summary = parseWrkOutput(stdout);

  return {
    requests: summary.requests,
    failures: summary.non2xx + summary.socketErrors,
    requestsPerSecond: summary.requestsPerSecond,
    p50Ms: summary.p50Ms,
    p99Ms: summary.p99Ms,
  };
}
