import http from "node:http";
import type { AddressInfo } from "node:net";
import { Agent, type Dispatcher } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WriteTracker } from "../../src/dispatch/write-tracker.js";
import { closedLoopbackUrl } from "../helpers/scripted-gateway.js";

let server: http.Server;
let origin: string;
const agent = new Agent();

beforeAll(async () => {
  server = http.createServer((request, response) => {
    request.resume();
    request.on("end", () => response.end("accepted"));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await agent.close();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

/** Returns the origin of a loopback port that nothing listens on. */
async function closedOrigin(): Promise<string> {
  return new URL(await closedLoopbackUrl()).origin;
}

/** Dispatches a POST with a handler of undici's newer API and resolves with the status and body, or the error. */
function dispatchNewApi(tracker: WriteTracker, target: string): Promise<{ status?: number; body: string; error?: Error }> {
  return new Promise((resolve) => {
    let status: number | undefined;
    const chunks: Buffer[] = [];
    const handler: Dispatcher.DispatchHandler = {
      onRequestStart: () => undefined,
      onResponseStart: (_controller, statusCode) => {
        status = statusCode;
      },
      onResponseData: (_controller, chunk) => {
        chunks.push(chunk);
      },
      onResponseEnd: () => resolve({ status, body: Buffer.concat(chunks).toString() }),
      onResponseError: (_controller, error) => resolve({ body: "", error }),
    };
    tracker.dispatch({ origin: target, path: "/sms", method: "POST", body: "{}" }, handler);
  });
}

describe("WriteTracker", () => {
  it("marks a written request, older handler API", async () => {
    const tracker = new WriteTracker(agent);

    const response = await tracker.request({ origin, path: "/sms", method: "POST", body: "{}" });

    expect(await response.body.text()).toBe("accepted");
    expect(tracker.writeStarted).toBe(true);
  });

  it("leaves a refused connection unmarked, older handler API", async () => {
    const tracker = new WriteTracker(agent);

    await expect(tracker.request({ origin: await closedOrigin(), path: "/sms", method: "POST", body: "{}" })).rejects.toThrow();

    expect(tracker.writeStarted).toBe(false);
  });

  it("marks a written request, newer handler API", async () => {
    const tracker = new WriteTracker(agent);

    const result = await dispatchNewApi(tracker, origin);

    expect(result).toEqual({ status: 200, body: "accepted" });
    expect(tracker.writeStarted).toBe(true);
  });

  it("leaves a refused connection unmarked, newer handler API", async () => {
    const tracker = new WriteTracker(agent);

    const result = await dispatchNewApi(tracker, await closedOrigin());

    expect(result.error).toBeInstanceOf(Error);
    expect(tracker.writeStarted).toBe(false);
  });
});
