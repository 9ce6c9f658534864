import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import os from "node:os";
import path from "node:path";
import { fromBinary } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { SendSmsRequestSchema } from "../../gen/smsgateway/v1/sms_service_pb.js";
import { runWrk } from "../../bench/load-runners.js";
import { sendSmsBytes } from "../../bench/request-bodies.js";
import { wrkScript, type WrkScriptOptions } from "../../bench/wrk-scripts.js";

describe("wrk script text", () => {
  test("wrk script body survives escaping", () => {
    const body = sendSmsBytes();
    const script = wrkScript({ body, headers: { "content-type": "application/proto" } });
    const escaped = /wrk\.body = "((?:\\\d{3})*)"/.exec(script)?.[1] ?? "";
    const decoded = Buffer.from(escaped.split("\\").slice(1).map(Number));

    expect(decoded.equals(Buffer.from(body))).toBe(true);
    expect(script).not.toContain("function request");
  });

  test("wrk script appends a key field", () => {
    const script = wrkScript({ body: sendSmsBytes(), headers: {}, keyPrefix: "run-" });

    expect(script).toContain("function request()");
    expect(script).toContain("string.char(50, #key)");
    // A message with the key field appended after the others decodes with that key.
    const appended = Buffer.concat([Buffer.from(sendSmsBytes()), Buffer.from([50, 7]), Buffer.from("run-1-1")]);
    expect(fromBinary(SendSmsRequestSchema, appended).idempotencyKey).toBe("run-1-1");
  });

  test("integration ids listed in the script", () => {
    const script = wrkScript({ body: sendSmsBytes({ integrationId: "" }), headers: {}, integrationIds: ["a", "b"] });

    expect(script).toContain('local integration_ids = {"\\097","\\098"}');
    expect(script).toContain("string.char(10, #id)");
  });

  test("integration id too long", () => {
    expect(() => wrkScript({ body: new Uint8Array(), headers: {}, integrationIds: ["x".repeat(128)] })).toThrow(/at most 127 bytes/);
  });

  test("no integration ids", () => {
    expect(() => wrkScript({ body: new Uint8Array(), headers: {}, integrationIds: [] })).toThrow(/1 or more ids/);
  });
});

// Runs the scripts in wrk against a loopback server that keeps every body it receives.
const hasWrk = spawnSync("wrk", ["--version"]).error === undefined;

describe.skipIf(!hasWrk)("wrk script requests", () => {
  let server: http.Server;
  let url: string;
  let directory: string;
  let bodies: Buffer[] = [];

  beforeAll(async () => {
    directory = mkdtempSync(path.join(os.tmpdir(), "wrk-script-test-"));
    server = http.createServer((request, response) => {
      const chunks: Buffer[] = [];
      request.on("data", (chunk: Buffer) => chunks.push(chunk));
      request.on("end", () => {
        bodies.push(Buffer.concat(chunks));
        response.end("{}");
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/smsgateway.v1.SmsService/SendSms`;
  });

  afterAll(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
    rmSync(directory, { recursive: true, force: true });
  });

  /** Runs the script in wrk for one second over one connection and decodes the bodies the server received. */
  async function requestsOf(options: WrkScriptOptions, scriptArgs?: string[]) {
    bodies = [];
    const scriptFile = path.join(directory, "script.lua");
    writeFileSync(scriptFile, wrkScript(options));
    await runWrk({ url, inFlight: 1, seconds: 1, scriptFile, scriptArgs });
    return bodies.map((body) => fromBinary(SendSmsRequestSchema, body));
  }

  // wrk calls request() once before it connects and does not send that request, so the sent ones start at the second.
  test("ids taken in turn", async () => {
    const ids = ["bench", "bench-1", "bench-2"];
    const requests = await requestsOf({ body: sendSmsBytes({ integrationId: "" }), headers: {}, integrationIds: ids });

    expect(requests.length).toBeGreaterThan(3);
    const positions = requests.map((request) => ids.indexOf(request.integrationId));
    expect(positions.every((position, index) => index === 0 || position === (positions[index - 1]! + 1) % ids.length)).toBe(true);
    expect(requests.every((request) => request.to === "+15550100000" && request.content === "Your code is 123456")).toBe(true);
  });

  test("new key per request and run", async () => {
    const options = { body: sendSmsBytes(), headers: {}, keyPrefix: "prefix-" };
    const first = await requestsOf(options, ["run1"]);
    const second = await requestsOf(options, ["run2"]);

    const keys = [...first, ...second].map((request) => request.idempotencyKey);
    expect(first.every((request) => /^prefix-run1-1-\d+$/.test(request.idempotencyKey))).toBe(true);
    expect(second.every((request) => /^prefix-run2-1-\d+$/.test(request.idempotencyKey))).toBe(true);
    expect(new Set(keys).size).toBe(keys.length);
    expect(first.every((request) => request.integrationId === "bench")).toBe(true);
  });

  test("ids and keys together", async () => {
    const requests = await requestsOf({ body: sendSmsBytes({ integrationId: "" }), headers: {}, integrationIds: ["a", "b"], keyPrefix: "k-" }, ["r"]);

    // The counter picks both the id and the key, so odd counters go to "a" and even ones to "b".
    for (const request of requests.slice(0, 10)) {
      const counter = Number(/^k-r-1-(\d+)$/.exec(request.idempotencyKey)?.[1]);
      expect(request.integrationId).toBe(counter % 2 === 1 ? "a" : "b");
    }
  });
});
