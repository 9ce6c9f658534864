import { Code, ConnectError } from "@connectrpc/connect";
import pino from "pino";
import { describe, expect, test } from "vitest";

import { GraceEndedError } from "../../src/errors.js";
import { CallPipeline, type IncomingCall } from "../../src/rpc/call-pipeline.js";

/** An incoming call whose signal aborts with `reason` while the handler runs, `remainingMs` before its deadline. */
function callAbortedWith(reason: unknown, remainingMs: number | undefined): { call: IncomingCall; abort(): void } {
  const controller = new AbortController();
  const call: IncomingCall = {
    server: "test",
    signal: controller.signal,
    timeoutMs: () => remainingMs,
    requestHeader: () => null,
    setResponseHeader: () => undefined,
  };
  return { call, abort: () => controller.abort(reason) };
}

/** Runs a handler that returns after the call's signal aborted, and returns the code of its log line. */
async function loggedCode(reason: unknown, remainingMs: number | undefined): Promise<unknown> {
  const lines: Record<string, unknown>[] = [];
  const logger = pino({ level: "info" }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
  const { call, abort } = callAbortedWith(reason, remainingMs);

  const response = await new CallPipeline(logger).runUnary("smsgateway.v1.SmsService/SendSmsBatch", {}, call, () => {
    abort();
    return Promise.resolve("results");
  });

  expect(response).toBe("results");
  return lines.find((line) => line.msg === "rpc finished")?.code;
}

describe("CallPipeline code of a handler that returned", () => {
  test.each([
    { name: "caller canceled", reason: new ConnectError("gone", Code.Canceled), remainingMs: undefined, code: "CANCELLED" },
    { name: "client reset the stream", reason: new ConnectError("stream reset", Code.Internal), remainingMs: 60_000, code: "CANCELLED" },
    { name: "server's deadline timer", reason: new ConnectError("deadline", Code.DeadlineExceeded), remainingMs: 0, code: "DEADLINE_EXCEEDED" },
    { name: "client closed at its deadline", reason: new ConnectError("gone", Code.Canceled), remainingMs: 0, code: "DEADLINE_EXCEEDED" },
    { name: "shutdown grace ended", reason: new GraceEndedError(), remainingMs: undefined, code: "OK" },
    { name: "shutdown grace ended, wrapped", reason: new ConnectError("ended", Code.Canceled, undefined, undefined, new GraceEndedError()), remainingMs: undefined, code: "OK" },
  ])("$name logs $code", async ({ reason, remainingMs, code }) => {
    expect(await loggedCode(reason, remainingMs)).toBe(code);
  });
});

describe("CallPipeline fields of the handler", () => {
  /** Runs `handler` through the pipeline and returns the call's last log line. */
  async function lastLine(handler: Parameters<CallPipeline["runUnary"]>[3]): Promise<Record<string, unknown> | undefined> {
    const lines: Record<string, unknown>[] = [];
    const logger = pino({ level: "info" }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
    const { call } = callAbortedWith(undefined, undefined);
    await new CallPipeline(logger).runUnary("smsgateway.v1.SmsService/SendSms", {}, call, handler).catch(() => undefined);
    return lines.at(-1);
  }

  test("success line has them", async () => {
    const line = await lastLine((_request, context) => {
      context.logFields = { integrationId: "acme", messageId: "m-1", code: "NOT_THE_CODE" };
      return Promise.resolve("sent");
    });

    expect(line).toMatchObject({ msg: "rpc finished", integrationId: "acme", messageId: "m-1", code: "OK" });
  });

  test("failure line has them", async () => {
    const line = await lastLine((_request, context) => {
      context.logFields = { integrationId: "acme" };
      return Promise.reject(new ConnectError("no such integration", Code.NotFound));
    });

    expect(line).toMatchObject({ msg: "rpc failed", integrationId: "acme", code: "NOT_FOUND", error: "no such integration" });
  });
});
