/**
 * Summary of the service's resident set size sampled over the soak: the
 * peaks of its first and last seconds, its target, and a line of samples
 * to show the trend. Pure, so the tests check it on made-up samples.
 */
import type { Measurement, TargetCheck } from "./report.js";

/** One reading of the service's `VmRSS`, taken `elapsedMs` after the soak's load started. */
export interface RssSample {
  elapsedMs: number;
  rssKb: number;
}

/** Length of the first and of the last window whose peaks the target compares. */
export const RSS_WINDOW_SECONDS = 10;
/** Most that the peak of the last window may exceed the peak of the first one, as a factor. */
export const MAX_RSS_GROWTH = 1.1;
/** Seconds between the points of the RSS line in the report. */
const TIMELINE_STEP_SECONDS = 10;

/** Peaks of the soak's RSS, in MB, and its value every {@link TIMELINE_STEP_SECONDS} seconds. */
export interface RssSummary {
  firstWindowMaxMb: number;
  lastWindowMaxMb: number;
  maxMb: number;
  timeline: { second: number; rssMb: number }[];
}

/**
 * Summarizes samples taken in time order. The first window is the samples
 * taken before {@link RSS_WINDOW_SECONDS}, the last window those taken in
 * the {@link RSS_WINDOW_SECONDS} before the last sample, so the two
 * overlap when the soak is shorter than twice the window.
 * @throws Error when there are no samples.
 */
export function summarizeRss(samples: readonly RssSample[]): RssSummary {
  const last = samples.at(-1);
  if (last === undefined) {
    throw new Error("the soak took no RSS samples");
  }
  const windowMs = RSS_WINDOW_SECONDS * 1000;
  const maxMb = (chosen: readonly RssSample[]) => Math.max(...chosen.map((sample) => sample.rssKb)) / 1024;
  const firstWindow = samples.filter((sample) => sample.elapsedMs < windowMs);
  const lastWindow = samples.filter((sample) => sample.elapsedMs >= last.elapsedMs - windowMs);

  const timeline: RssSummary["timeline"] = [];
  for (let second = 0; second * 1000 <= last.elapsedMs; second += TIMELINE_STEP_SECONDS) {
    const nearest = samples.reduce((best, sample) =>
      Math.abs(sample.elapsedMs - second * 1000) < Math.abs(best.elapsedMs - second * 1000) ? sample : best,
    );
    timeline.push({ second, rssMb: nearest.rssKb / 1024 });
  }
  return {
    firstWindowMaxMb: maxMb(firstWindow.length > 0 ? firstWindow : [samples[0]!]),
    lastWindowMaxMb: maxMb(lastWindow),
    maxMb: maxMb(samples),
    timeline,
  };
}

/** Checks that the service's RSS stayed flat: the last window's peak at most {@link MAX_RSS_GROWTH} × the first's. */
export function checkRssFlat(summary: RssSummary, soakSeconds: number): TargetCheck {
  const growth = summary.lastWindowMaxMb / summary.firstWindowMaxMb;
  return {
    description: `service RSS over a ${soakSeconds}-s soak: max of the last ${RSS_WINDOW_SECONDS} s ≤ ${MAX_RSS_GROWTH} × max of the first ${RSS_WINDOW_SECONDS} s`,
    measured: `${growth.toFixed(2)} × (${summary.firstWindowMaxMb.toFixed(0)} MB, then ${summary.lastWindowMaxMb.toFixed(0)} MB)`,
    met: growth <= MAX_RSS_GROWTH,
  };
}

/** Formats the RSS line of the report, for example `0 s: 150 MB, 10 s: 162 MB`. */
export function rssTimelineText(summary: RssSummary): string {
  return summary.timeline.map((point) => `${point.second} s: ${point.rssMb.toFixed(0)} MB`).join(", ");
}

/** Figures of the soak's load, with the RSS samples taken during it. */
export interface SoakResult {
  seconds: number;
  inFlight: number;
  warmUpSeconds: number;
  measurement: Measurement;
  samples: RssSample[];
}

/** Formats the soak as a Markdown section without its heading. */
export function soakSection(soak: SoakResult): string {
  const summary = summarizeRss(soak.samples);
  const { measurement } = soak;
  return [
    `gRPC to the service, ${soak.inFlight} in flight for ${soak.seconds} s after a ${soak.warmUpSeconds}-s warm-up: ` +
      `${measurement.messagesPerSecond.toFixed(0)} msg/s, p50 ${measurement.p50Ms.toFixed(2)} ms, ` +
      `CPU ${measurement.cpuMsPerMessage.toFixed(3)} ms/msg, ${measurement.failures} failed.`,
    "",
    `| RSS MB | First ${RSS_WINDOW_SECONDS} s max | Last ${RSS_WINDOW_SECONDS} s max | Max |`,
    "|---|---:|---:|---:|",
    `| service | ${summary.firstWindowMaxMb.toFixed(0)} | ${summary.lastWindowMaxMb.toFixed(0)} | ${summary.maxMb.toFixed(0)} |`,
    "",
    `RSS over time: ${rssTimelineText(summary)}.`,
  ].join("\n");
}
