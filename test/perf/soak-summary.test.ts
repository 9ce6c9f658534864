import { describe, expect, test } from "vitest";
import type { Measurement } from "../../bench/report.js";
import { checkRssFlat, rssTimelineText, soakSection, summarizeRss, type RssSample } from "../../bench/soak-summary.js";

/** Returns one sample a second, starting at 0, from RSS values in MB. */
function samplesOf(rssMb: readonly number[]): RssSample[] {
  return rssMb.map((mb, second) => ({ elapsedMs: second * 1000 + 3, rssKb: mb * 1024 }));
}

describe("RSS summary", () => {
  test("first and last windows", () => {
    // 25 samples: the first window is seconds 0 to 9, the last one seconds 14 to 24.
    const rss = Array.from({ length: 25 }, (_, second) => 100 + second);
    rss[12] = 300;

    const summary = summarizeRss(samplesOf(rss));

    expect(summary.firstWindowMaxMb).toBe(109);
    expect(summary.lastWindowMaxMb).toBe(124);
    expect(summary.maxMb).toBe(300);
  });

  test("timeline every 10 seconds", () => {
    const summary = summarizeRss(samplesOf(Array.from({ length: 25 }, (_, second) => 100 + second)));

    expect(summary.timeline).toEqual([
      { second: 0, rssMb: 100 },
      { second: 10, rssMb: 110 },
      { second: 20, rssMb: 120 },
    ]);
    expect(rssTimelineText(summary)).toBe("0 s: 100 MB, 10 s: 110 MB, 20 s: 120 MB");
  });

  test("short soak overlaps its windows", () => {
    const summary = summarizeRss(samplesOf([100, 140, 120]));

    expect(summary.firstWindowMaxMb).toBe(140);
    expect(summary.lastWindowMaxMb).toBe(140);
  });

  test("no samples", () => {
    expect(() => summarizeRss([])).toThrow(/no RSS samples/);
  });
});

describe("RSS target", () => {
  test("flat within 1.1", () => {
    const check = checkRssFlat({ firstWindowMaxMb: 200, lastWindowMaxMb: 219, maxMb: 225, timeline: [] }, 60);

    expect(check.met).toBe(true);
    expect(check.measured).toBe("1.09 × (200 MB, then 219 MB)");
    expect(check.description).toBe("service RSS over a 60-s soak: max of the last 10 s ≤ 1.1 × max of the first 10 s");
  });

  test("growth above 1.1", () => {
    const check = checkRssFlat({ firstWindowMaxMb: 200, lastWindowMaxMb: 230, maxMb: 230, timeline: [] }, 60);

    expect(check.met).toBe(false);
  });
});

test("soak section", () => {
  const measurement: Measurement = { messages: 6000, failures: 0, messagesPerSecond: 3000, p50Ms: 20, p99Ms: 60, cpuMsPerMessage: 0.3, peakRssMb: 250 };
  const samples = samplesOf(Array.from({ length: 21 }, () => 240));

  const section = soakSection({ seconds: 20, inFlight: 64, warmUpSeconds: 5, measurement, samples });

  expect(section).toContain("64 in flight for 20 s after a 5-s warm-up: 3000 msg/s");
  expect(section).toContain("| service | 240 | 240 | 240 |");
  expect(section).toContain("RSS over time: 0 s: 240 MB, 10 s: 240 MB, 20 s: 240 MB.");
});
