import { fromBinary } from "@bufbuild/protobuf";
import { describe, expect, test } from "vitest";
import { SendSmsBatchRequestSchema, SendSmsRequestSchema } from "../../gen/smsgateway/v1/sms_service_pb.js";
import { checkTargets } from "../../bench/bench-targets.js";
import { h2loadConnections } from "../../bench/load-runners.js";
import {
  parseH2loadLog,
  parseH2loadSummary,
  parseProcStatCpuTicks,
  parseVmHwmKb,
  parseVmRssKb,
  parseWrkOutput,
  percentile,
} from "../../bench/load-output.js";
import { compare, median, resultsTable, type Measurement, type Row } from "../../bench/report.js";
import { toMeasurement } from "../../bench/measurement.js";
import { benchIntegrationIds, grpcFrame, sendSmsBatchBytes, sendSmsBytes } from "../../bench/request-bodies.js";

// Recorded from h2load 1.52 (nghttp2-client on Debian 12).
const H2LOAD_OUTPUT = `starting benchmark...
spawning thread #0: 4 total client(s). Timing-based test with 0s of warm-up time and 3s of main duration for measurements.
Application protocol: h2c

finished in 3.01s, 581.00 req/s, 28.84KB/s
requests: 1743 total, 1807 started, 1743 done, 1740 succeeded, 3 failed, 2 errored, 0 timeout
status codes: 1740 2xx, 0 3xx, 3 4xx, 0 5xx
traffic: 86.51KB (88590) total, 9.13KB (9351) headers (space savings 96.14%), 27.86KB (28524) data
                     min         max         mean         sd        +/- sd
time for request:    11.55ms    625.17ms    107.03ms    103.82ms    90.48%
`;

// Recorded from wrk 4.1.0 (Debian 12) with --latency.
const WRK_OUTPUT = `Running 3s test @ http://127.0.0.1:33999/smsgateway.v1.SmsService/SendSms
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   249.90ms  286.44ms   1.96s    89.89%
    Req/Sec   282.18    231.51     0.89k    78.57%
  Latency Distribution
     50%  170.18ms
     75%  308.95ms
     90%  552.68ms
     99%    1.49s 
  821 requests in 3.09s, 135.50KB read
  Socket errors: connect 0, read 1, write 0, timeout 13
  Non-2xx or 3xx responses: 4
Requests/sec:    265.74
Transfer/sec:     43.86KB
`;

describe("load tool output", () => {
  test("h2load summary", () => {
    expect(parseH2loadSummary(H2LOAD_OUTPUT)).toEqual({ requestsPerSecond: 581, done: 1743, succeeded: 1740, failed: 3, errored: 2 });
  });

  test("h2load summary missing", () => {
    expect(() => parseH2loadSummary("no summary here")).toThrow(/no summary/);
  });

  test("h2load log sorted", () => {
    const log = "1796417226418245\t200\t465757\n1796417226418246\t200\t1200\n1796417226418247\t200\t9000\n";

    expect(parseH2loadLog(log)).toEqual([1200, 9000, 465757]);
  });

  test("wrk latency and errors", () => {
    const summary = parseWrkOutput(WRK_OUTPUT);

    expect(summary.requests).toBe(821);
    expect(summary.requestsPerSecond).toBe(265.74);
    expect(summary.p50Ms).toBe(170.18);
    expect(summary.p99Ms).toBe(1490);
    expect(summary.non2xx).toBe(4);
    expect(summary.socketErrors).toBe(14);
  });

  test("wrk microseconds", () => {
    const summary = parseWrkOutput(WRK_OUTPUT.replace("170.18ms", "812.00us"));

    expect(summary.p50Ms).toBeCloseTo(0.812);
  });

  test("percentile by nearest rank", () => {
    const values = Array.from({ length: 100 }, (_, i) => i + 1);

    expect(percentile(values, 50)).toBe(50);
    expect(percentile(values, 99)).toBe(99);
    expect(percentile([7], 99)).toBe(7);
    expect(percentile([], 50)).toBe(0);
  });
});

describe("/proc readings", () => {
  test("stat CPU ticks with spaces in the name", () => {
    const stat = "4242 (node (a b)) S 1 4242 4242 0 -1 4194304 9000 0 0 0 1234 56 0 0 20 0 11 0 100 1000 2000";

    expect(parseProcStatCpuTicks(stat)).toBe(1290);
  });

  test("status peak RSS", () => {
    expect(parseVmHwmKb("Name:\tnode\nVmPeak:\t 999 kB\nVmHWM:\t  183452 kB\nVmRSS:\t 1000 kB\n")).toBe(183452);
  });

  test("status current RSS", () => {
    expect(parseVmRssKb("Name:\tnode\nVmHWM:\t  183452 kB\nVmRSS:\t  150012 kB\n")).toBe(150012);
  });

  test("status without VmRSS", () => {
    expect(() => parseVmRssKb("Name:\tnode\n")).toThrow(/no VmRSS line/);
  });
});

describe("request bodies", () => {
  test("gRPC frame prefix", () => {
    const message = sendSmsBytes({ idempotencyKey: "key-1" });
    const frame = grpcFrame(message);

    expect(frame[0]).toBe(0);
    expect(frame.readUInt32BE(1)).toBe(message.length);
    expect(fromBinary(SendSmsRequestSchema, frame.subarray(5)).idempotencyKey).toBe("key-1");
  });

  test("SendSms without an integration id", () => {
    const body = sendSmsBytes({ integrationId: "" });

    expect(body[0]).toBe((2 << 3) | 2);
    expect(fromBinary(SendSmsRequestSchema, body).integrationId).toBe("");
    expect(fromBinary(SendSmsRequestSchema, body).to).toBe("+15550100000");
  });

  test("SendSmsBatch of 100 messages", () => {
    const request = fromBinary(SendSmsBatchRequestSchema, sendSmsBatchBytes(100));

    expect(request.integrationId).toBe("bench");
    expect(request.messages).toHaveLength(100);
    expect(request.messages[99]?.to).toBe("+15550100000");
    expect(request.messages[99]?.content).toBe("Your code is 123456");
  });

  test("integration ids start with the bench id", () => {
    const ids = benchIntegrationIds(10_000);

    expect(ids.slice(0, 3)).toEqual(["bench", "bench-1", "bench-2"]);
    expect(ids.at(-1)).toBe("bench-9999");
    expect(new Set(ids).size).toBe(10_000);
  });
});

describe("measurement", () => {
  const result = { requests: 30, failures: 2, requestsPerSecond: 15, p50Ms: 40, p99Ms: 90 };

  test("batch calls counted in messages", () => {
    const measured = toMeasurement({ reachesGateway: true, messagesPerCall: 100 }, result, { cpuMs: 600, relayed: 2800, peakRssMb: 120 });

    expect(measured.messages).toBe(3000);
    expect(measured.messagesPerSecond).toBe(1500);
    expect(measured.failures).toBe(200);
    expect(measured.cpuMsPerMessage).toBeCloseTo(0.2);
    expect(measured.p50Ms).toBe(40);
  });

  test("unrelayed messages of successful calls fail", () => {
    const measured = toMeasurement({ reachesGateway: true, messagesPerCall: 100 }, result, { cpuMs: 600, relayed: 2750, peakRssMb: 120 });

    expect(measured.failures).toBe(250);
  });

  test("no completed call, no figures", () => {
    const none = { ...result, requests: 0, failures: 0, requestsPerSecond: 0 };

    const measured = toMeasurement({ reachesGateway: true, messagesPerCall: 100 }, none, { cpuMs: 1200, relayed: 900, peakRssMb: 120 });

    expect(measured.messages).toBe(0);
    expect(measured.cpuMsPerMessage).toBeNaN();
    expect(measured.p50Ms).toBeNaN();
    expect(measured.p99Ms).toBeNaN();
  });

  test("replays need not reach the gateway", () => {
    const measured = toMeasurement({ reachesGateway: false, messagesPerCall: 1 }, result, { cpuMs: 6, relayed: 0, peakRssMb: 120 });

    expect(measured.failures).toBe(2);
    expect(measured.cpuMsPerMessage).toBeCloseTo(0.2);
  });
});

function run(requestsPerSecond: number, p50Ms: number, cpuMsPerMessage = 1, peakRssMb = 100): Measurement {
  return { messages: requestsPerSecond * 2, failures: 0, messagesPerSecond: requestsPerSecond, p50Ms, p99Ms: p50Ms * 3, cpuMsPerMessage, peakRssMb };
}

describe("report", () => {
  test("h2load connection split", () => {
    expect(h2loadConnections(1)).toEqual({ clients: 1, streams: 1 });
    expect(h2loadConnections(64)).toEqual({ clients: 4, streams: 16 });
    expect(h2loadConnections(256)).toEqual({ clients: 4, streams: 64 });
  });

  test("median", () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 2, 3])).toBe(2.5);
    expect(median([])).toBeNaN();
    expect(median([Number.NaN, 5])).toBe(5);
    expect(median([Number.NaN])).toBeNaN();
  });

  test("comparison per round", () => {
    const service: Row = { protocol: "gRPC", inFlight: 64, target: "service", reference: "grpc-js relay", runs: [run(800, 2), run(450, 4)] };
    const relay: Row = { protocol: "gRPC", inFlight: 64, target: "grpc-js relay", runs: [run(1000, 1.5), run(500, 3)] };

    const comparison = compare(service, relay);

    expect(comparison.throughputRatio).toBeCloseTo(0.85);
    expect(comparison.p50DeltaMs).toBeCloseTo(0.75);
    expect(resultsTable([service, relay])).toContain("| gRPC | 64 | service | 625 |");
  });

  test("targets met and missed", () => {
    const rows: Row[] = [
      { protocol: "gRPC", inFlight: 64, target: "service", reference: "grpc-js relay", runs: [run(790, 2)] },
      { protocol: "gRPC", inFlight: 64, target: "grpc-js relay", runs: [run(1000, 2)] },
      { protocol: "gRPC", inFlight: 1, target: "service", reference: "grpc-js relay", runs: [run(500, 1.4)] },
      { protocol: "gRPC", inFlight: 1, target: "grpc-js relay", runs: [run(600, 1)] },
      { protocol: "gRPC", inFlight: 256, target: "service", reference: "grpc-js relay", runs: [run(900, 40, 1, 150)] },
      { protocol: "gRPC", inFlight: 256, target: "service + key", reference: "grpc-js relay", runs: [run(900, 40, 1, 210)] },
    ];

    const checks = checkTargets(rows);

    expect(checks.map((check) => [check.measured, check.met])).toEqual([
      ["0.79 ×", false],
      ["+0.40 ms", true],
      ["210.0 MB", false],
    ]);
  });

  test("new keys against no keys, same round", () => {
    const rows: Row[] = [
      { protocol: "Connect, HTTP/1.1", inFlight: 64, target: "service", reference: "connect relay", runs: [run(1000, 20), run(500, 20), run(800, 20)] },
      { protocol: "Connect, HTTP/1.1", inFlight: 64, target: "service + key", reference: "connect relay", runs: [run(850, 20), run(380, 20), run(720, 20)] },
      // The h2load key rows replay one key, so the target does not use them.
      { protocol: "gRPC", inFlight: 64, target: "service", reference: "grpc-js relay", runs: [run(1000, 20)] },
      { protocol: "gRPC", inFlight: 64, target: "service + key", reference: "grpc-js relay", runs: [run(100, 20)] },
    ];

    const checks = checkTargets(rows);

    expect(checks).toHaveLength(1);
    expect(checks[0]?.description).toContain("Connect, HTTP/1.1 msg/s with a new idempotency key per request");
    // Per round 0.85, 0.76 and 0.9: the median is 0.85, while the medians of the rows would give 0.9.
    expect(checks[0]?.measured).toBe("0.85 ×");
    expect(checks[0]?.met).toBe(true);
  });

  test("many integrations CPU per protocol", () => {
    const rows: Row[] = [];
    for (const [protocol, manyCpu] of [["gRPC", 0.32], ["Connect, HTTP/2", 0.44], ["Connect, HTTP/1.1", 0.3]] as const) {
      rows.push(
        { protocol, inFlight: 64, target: "service", reference: "connect relay", runs: [run(1000, 20, 0.3)] },
        { protocol, inFlight: 64, target: "service, 10,000 integrations", reference: "service", runs: [run(1000, 20, manyCpu)] },
      );
    }

    const checks = checkTargets(rows);

    expect(checks.map((check) => check.description)).toEqual([
      "gRPC CPU ms/msg of service, 10,000 integrations at 64 in flight ≤ 1.1 × service",
      "Connect, HTTP/2 CPU ms/msg of service, 10,000 integrations at 64 in flight ≤ 1.1 × service",
      "Connect, HTTP/1.1 CPU ms/msg of service, 10,000 integrations at 64 in flight ≤ 1.1 × service",
    ]);
    expect(checks.map((check) => [check.measured, check.met])).toEqual([
      ["1.07 ×", true],
      ["1.47 ×", false],
      ["1.00 ×", true],
    ]);
  });

  test("peak RSS target skips batch and many integrations", () => {
    const rows: Row[] = [
      { protocol: "gRPC", inFlight: 256, target: "service", reference: "grpc-js relay", runs: [run(900, 40, 1, 150)] },
      { protocol: "gRPC", inFlight: 256, target: "service, batch of 100", reference: "service", runs: [run(900, 40, 1, 400)] },
      { protocol: "gRPC", inFlight: 256, target: "service, 10,000 integrations", reference: "service", runs: [run(900, 40, 1, 300)] },
    ];

    expect(checkTargets(rows).map((check) => [check.measured, check.met])).toEqual([["150.0 MB", true]]);
  });
});
