/**
 * The Markdown report of one `npm run bench`: how and where it ran, the
 * targets, the results of the rounds and the soak.
 */
import os from "node:os";
import { benchCommand, type BenchSettings } from "./bench-settings.js";
import { checkTargets } from "./bench-targets.js";
import { SEEDING_IN_FLIGHT, type SeedingTimes } from "./integration-seeding.js";
import { resultsTable, targetsTable, type Row } from "./report.js";
import { checkRssFlat, soakSection, summarizeRss, type SoakResult } from "./soak-summary.js";
import { serviceNodeArgs } from "./start-command.js";
import { MANY_INTEGRATIONS } from "./target-names.js";

/** Rows of the rounds, and the time it took to fill the second service process. */
export interface RoundsResult {
  rows: Row[];
  seeding: SeedingTimes;
}

/** Everything the report shows; `rounds` and `soak` are unset when the settings skipped them. */
export interface RunFacts {
  settings: BenchSettings;
  startedAt: Date;
  loadAtStart: string;
  servedByGrpcJs: boolean;
  rounds?: RoundsResult;
  soak?: SoakResult;
}

/** Describes the machine: CPUs, memory, kernel and Node version. */
function machineDescription(): string {
  const cpus = os.cpus();
  const memoryGb = (os.totalmem() / 1024 ** 3).toFixed(1);
  return `${cpus.length} × ${cpus[0]?.model ?? "unknown CPU"}, ${memoryGb} GB memory, Linux ${os.release()}, Node ${process.version}`;
}

/** Returns the 1, 5 and 15-minute load averages. */
export function loadAverage(): string {
  return os.loadavg().map((value) => value.toFixed(1)).join(" / ");
}

/** Formats the report. Reads the machine and the load average at the end of the run. */
export function runReport(facts: RunFacts): string {
  const { settings, rounds, soak } = facts;
  const checks = [...checkTargets(rounds?.rows ?? [])];
  if (soak !== undefined) {
    checks.push(checkRssFlat(summarizeRss(soak.samples), soak.seconds));
  }
  const seconds = (ms: number) => (ms / 1000).toFixed(1);

  const lines = [
    `### Run of ${facts.startedAt.toISOString().slice(0, 16).replace("T", " ")} UTC`,
    "",
    `- Machine: ${machineDescription()}`,
    `- Command: \`${benchCommand(settings)}\` (${settings.seconds} s per run, ${settings.rounds} rounds per cell, ${settings.soakSeconds}-s soak)`,
    `- Load average (1/5/15 min) at start: ${facts.loadAtStart}; at end: ${loadAverage()}`,
    `- Service: \`node ${serviceNodeArgs().join(" ")}\` after \`npm run build\`, as \`npm start\` runs it, SQLite store, LOG_LEVEL=info logging to a file, OUTBOUND_ALLOW=127.0.0.1, SEND_CONCURRENCY=1024; gRPC calls ${facts.servedByGrpcJs ? "were" : "were NOT"} served by grpc-js`,
  ];
  if (rounds !== undefined) {
    lines.push(
      `- ${MANY_INTEGRATIONS.toLocaleString("en-US")} integrations: stored through ConfigureIntegration in ${seconds(rounds.seeding.storeMs)} s, ` +
        `then one SendSms through each in ${seconds(rounds.seeding.firstSendMs)} s (Connect HTTP/1.1, ${SEEDING_IN_FLIGHT} calls in flight)`,
    );
  }
  lines.push("", "#### Targets", "", targetsTable(checks));
  if (rounds !== undefined) {
    lines.push("", "#### Results", "", resultsTable(rounds.rows));
  }
  if (soak !== undefined) {
    lines.push("", "#### Soak", "", soakSection(soak));
  }
  lines.push("");
  return lines.join("\n");
}
