import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { ErrorInfoSchema, GatewayErrorSchema, RetryInfoSchema } from "../../gen/smsgateway/v1/errors_pb.js";
import { SmsService } from "../../gen/smsgateway/v1/sms_service_pb.js";
import { CLIENT_KINDS } from "../helpers/clients.js";
import type { RecordedRequest, ScriptedReply } from "../helpers/scripted-gateway.js";
import { startTestService } from "../helpers/service.js";
import {
  ACCEPTED,
  connectClients,
  deferred,
  integrationFor,
  rejectionOf,
  startFlowTestBed,
  waitFor,
  type FlowTestBed,
} from "../flow/flow-fixtures.js";
import {
  acceptedByRecipient,
  codesOf,
  detailsOf,
  errorOf,
  InFlightCounter,
  messages,
  reasonOf,
  recipientOf,
} from "./batch-fixtures.js";

const BATCH_CONCURRENCY = 4;
const FAILURE_THRESHOLD = 2;
/** Long enough that a batch right after the circuit opened finds it open, short enough to wait out. */
const OPEN_MS = 1_500;

let bed: FlowTestBed;

beforeAll(async () => {
  bed = await startFlowTestBed({
    batchConcurrency: BATCH_CONCURRENCY,
    circuitFailureThreshold: FAILURE_THRESHOLD,
    circuitOpenMs: OPEN_MS,
  });
});

afterAll(async () => {
  await bed.stop();
});

/**
 * Serves `path` so that requests wait until `holdUntil` holds for the
 * requests in flight, then the gateway replies to every request. Returns the counter.
 */
function countingPath(path: string, holdUntil: (counter: InFlightCounter) => boolean): InFlightCounter {
  const counter = new InFlightCounter();
  const released = deferred();
  bed.gateway.on(path, async (request) => {
    const leave = counter.enter();
    if (holdUntil(counter)) {
      released.resolve();
    }
    await released.promise;
    leave();
    return acceptedByRecipient(request);
  });
  return counter;
}

/** Returns the "batch finished" log line of an integration, once written. */
function batchLogLine(integrationId: string): Record<string, unknown> | undefined {
  return bed.service.logLines.find((line) => line.msg === "batch finished" && line.integrationId === integrationId);
}

describe("concurrency", () => {
  test("stays within BATCH_CONCURRENCY", async () => {
    const counter = countingPath("/wide", (inFlight) => inFlight.current === BATCH_CONCURRENCY);
    await bed.configure("wide", bed.gateway.url("/wide"));

    const response = await bed.clients.sms.sendSmsBatch({ integrationId: "wide", messages: messages(20) });

    expect(codesOf(response).every((code) => code === "OK")).toBe(true);
    expect(counter.max).toBe(BATCH_CONCURRENCY);
    expect(bed.gateway.requestsTo("/wide")).toHaveLength(20);
  });

  test("stays within the integration's own limit", async () => {
    const counter = countingPath("/narrow", (inFlight) => inFlight.current === 2);
    await bed.configure("narrow", bed.gateway.url("/narrow"), { maxConcurrentSends: 2 });

    const response = await bed.clients.sms.sendSmsBatch({ integrationId: "narrow", messages: messages(10) });

    expect(codesOf(response)).toEqual(Array(10).fill("OK"));
    expect(counter.max).toBe(2);
  });

  test("waits for slots that other sends hold", async () => {
    const counter = new InFlightCounter();
    const release = deferred();
    const held = "+15559000000";
    bed.gateway.on("/shared", async (request) => {
      const leave = counter.enter();
      if (recipientOf(request) === held) {
        await release.promise;
      }
      leave();
      return acceptedByRecipient(request);
    });
    await bed.configure("shared", bed.gateway.url("/shared"), { maxConcurrentSends: 2 });
    const single = bed.clients.sms.sendSms({ integrationId: "shared", to: held, content: "holds a slot" });
    await waitFor(() => bed.gateway.requestsTo("/shared").length === 1, "the single send to reach the gateway");

    const response = await bed.clients.sms.sendSmsBatch({ integrationId: "shared", messages: messages(6) });
    release.resolve();
    await single;

    expect(codesOf(response)).toEqual(Array(6).fill("OK"));
    expect(counter.max).toBeLessThanOrEqual(2);
  });
});

describe("rate limit", () => {
  test("paces the batch instead of failing it", async () => {
    bed.gateway.on("/paced", acceptedByRecipient);
    await bed.configure("paced", bed.gateway.url("/paced"), { maxSendsPerSecond: 5 });

    const response = await bed.clients.sms.sendSmsBatch({ integrationId: "paced", messages: messages(8) }, { timeoutMs: 30_000 });

    expect(codesOf(response)).toEqual(Array(8).fill("OK"));
    expect(bed.gateway.requestsTo("/paced")).toHaveLength(8);
  });

  test("fails messages whose wait passes the deadline", async () => {
    bed.gateway.on("/slow-rate", acceptedByRecipient);
    // A burst of one, then one send every 2 s: longer than the call's deadline.
    await bed.configure("slow-rate", bed.gateway.url("/slow-rate"), { maxSendsPerSecond: 0.5 });

    const response = await bed.clients.sms.sendSmsBatch({ integrationId: "slow-rate", messages: messages(3) }, { timeoutMs: 1_000 });

    expect(codesOf(response)).toEqual(["OK", "RESOURCE_EXHAUSTED", "RESOURCE_EXHAUSTED"]);
    const limited = errorOf(response.results[1]);
    expect(reasonOf(limited)).toBe("RATE_LIMITED");
    expect(detailsOf(limited, RetryInfoSchema)).toHaveLength(1);
    expect(bed.gateway.requestsTo("/slow-rate")).toHaveLength(1);
  });
});

describe("circuit breaker", () => {
  test("an open circuit fails the rest fast", async () => {
    bed.gateway.on("/down", { status: 500, json: { error: "maintenance" } });
    await bed.configure("down", bed.gateway.url("/down"), { maxConcurrentSends: 1 });

    const response = await bed.clients.sms.sendSmsBatch({ integrationId: "down", messages: messages(6) });

    expect(codesOf(response)).toEqual(Array(6).fill("UNAVAILABLE"));
    expect(detailsOf(errorOf(response.results[1]), GatewayErrorSchema)[0]?.httpStatus).toBe(500);
    for (const result of response.results.slice(FAILURE_THRESHOLD)) {
      const error = errorOf(result);
      expect(error.code).toBe(Code.Unavailable);
      expect(detailsOf(error, ErrorInfoSchema)[0]?.metadata["circuit_state"]).toBe("open");
      expect(reasonOf(error)).toBe("CIRCUIT_OPEN");
    }
    expect(response.failedCount).toBe(6);
    expect(bed.gateway.requestsTo("/down")).toHaveLength(FAILURE_THRESHOLD);
  });

  test("a half-open circuit lets the batch wait for its probe", async () => {
    bed.gateway.on("/recovering", { status: 500 });
    await bed.configure("recovering", bed.gateway.url("/recovering"));
    for (let i = 0; i < FAILURE_THRESHOLD; i++) {
      await rejectionOf(bed.send("recovering"));
    }
    bed.gateway.on("/recovering", acceptedByRecipient);
    await waitFor(() => bed.flowState("recovering")?.circuit === "half_open", "the cool-down to end", OPEN_MS * 10);

    const response = await bed.clients.sms.sendSmsBatch({ integrationId: "recovering", messages: messages(5) });

    expect(codesOf(response)).toEqual(Array(5).fill("OK"));
    expect(bed.flowState("recovering")?.circuit).toBe("closed");
  });
});

describe("cancellation, deadline and shutdown", () => {
  test("a canceled batch starts no further message", async () => {
    const held = deferred();
    bed.gateway.on("/cancel", async () => {
      await held.promise;
      return ACCEPTED;
    });
    await bed.configure("cancel", bed.gateway.url("/cancel"), { maxConcurrentSends: 2 });
    const controller = new AbortController();

    const call = bed.clients.sms.sendSmsBatch({ integrationId: "cancel", messages: messages(10) }, { signal: controller.signal });
    await waitFor(() => bed.gateway.requestsTo("/cancel").length === 2, "two messages to reach the gateway");
    controller.abort();
    await rejectionOf(call);
    await waitFor(() => batchLogLine("cancel") !== undefined, "the batch to finish");
    held.resolve();

    expect(batchLogLine("cancel")).toMatchObject({ succeeded: 0, failed: 10, failuresByCode: { CANCELLED: 10 } });
    expect(bed.gateway.requestsTo("/cancel")).toHaveLength(2);
  });

  test.each(CLIENT_KINDS.filter((kind) => kind.name.startsWith("Connect over HTTP/2") || kind.name.startsWith("grpc-js")))(
    "results arrive before the deadline over $name",
    async (kind) => {
      const id = `deadline-${kind.name.startsWith("grpc-js") ? "grpc" : "connect"}`;
      const first = "+1555000000";
      const hanging: ScriptedReply = { hang: true };
      bed.gateway.on(`/${id}`, (request: RecordedRequest) => (recipientOf(request) === first ? acceptedByRecipient(request) : hanging));
      await bed.configure(id, bed.gateway.url(`/${id}`), { maxConcurrentSends: 1 });
      const { client, close } = kind.create(SmsService, bed.service.baseUrl);

      try {
        const response = await client.sendSmsBatch({ integrationId: id, messages: messages(5) }, { timeoutMs: 2_000 });

        expect(codesOf(response)).toEqual(["OK", ...Array(4).fill("DEADLINE_EXCEEDED")]);
        expect(detailsOf(errorOf(response.results[1]), GatewayErrorSchema)[0]?.outcomeUnknown).toBe(true);
        // undici may end a request up to 0.5 s before its timeout, leaving time to start one more message.
        const reasons = response.results.slice(1).map((result) => reasonOf(errorOf(result)));
        const firstNotStarted = 1 + reasons.indexOf("MESSAGE_NOT_STARTED");
        expect(firstNotStarted).toBeGreaterThanOrEqual(2);
        expect(reasons.slice(firstNotStarted - 1)).toEqual(Array(5 - firstNotStarted).fill("MESSAGE_NOT_STARTED"));
        expect(bed.gateway.requestsTo(`/${id}`)).toHaveLength(firstNotStarted);
      } finally {
        close();
      }
    },
  );

  test("shutdown stops starting messages", async () => {
    const service = await startTestService();
    const release = deferred();
    bed.gateway.on("/closing", async (request) => {
      await release.promise;
      return acceptedByRecipient(request);
    });
    try {
      const clients = connectClients(service.baseUrl);
      const integration = integrationFor("closing", bed.gateway.url("/closing"), { maxConcurrentSends: 1 });
      await clients.integrations.configureIntegration({ integration, allowMissing: true });
      const call = clients.sms.sendSmsBatch({ integrationId: "closing", messages: messages(4) });
      await waitFor(() => bed.gateway.requestsTo("/closing").length === 1, "the first message to reach the gateway");

      const closed = service.app.close(10_000);
      release.resolve();
      const response = await call;
      await closed;

      expect(codesOf(response)).toEqual(["OK", "UNAVAILABLE", "UNAVAILABLE", "UNAVAILABLE"]);
      for (const result of response.results.slice(1)) {
        expect(reasonOf(errorOf(result))).toBe("MESSAGE_NOT_STARTED");
        expect(errorOf(result).message).toContain("the service began to shut down");
      }
      expect(bed.gateway.requestsTo("/closing")).toHaveLength(1);
    } finally {
      release.resolve();
      await service.stop();
    }
  });
});
