import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { GatewayErrorSchema } from "../../gen/smsgateway/v1/errors_pb.js";
import { closedLoopbackUrl } from "../helpers/scripted-gateway.js";
import {
  ACCEPTED,
  deferred,
  errorInfoOf,
  rejectionOf,
  retryDelayMsOf,
  sleep,
  startFlowTestBed,
  waitFor,
  type FlowTestBed,
} from "./flow-fixtures.js";

const FAILURE_THRESHOLD = 3;
/** Long enough that a rejection right after opening cannot miss the open state, short enough to wait out. */
const OPEN_MS = 1_500;

let bed: FlowTestBed;

beforeAll(async () => {
  bed = await startFlowTestBed({
    circuitFailureThreshold: FAILURE_THRESHOLD,
    circuitOpenMs: OPEN_MS,
    circuitHalfOpenProbes: 1,
  });
});

afterAll(async () => {
  await bed.stop();
});

/** Sends until the circuit opens, checking that each failure is the gateway's own error. */
async function failThreshold(integrationId: string, code: Code): Promise<void> {
  for (let i = 0; i < FAILURE_THRESHOLD; i++) {
    const error = await rejectionOf(bed.send(integrationId));
    expect(error.code).toBe(code);
    expect(error.findDetails(GatewayErrorSchema)).toHaveLength(1);
  }
}

describe("circuit breaker", () => {
  test("opens after consecutive 5xx and rejects without a POST", async () => {
    bed.gateway.on("/down", { status: 500, json: { error: "maintenance" } });
    await bed.configure("down", bed.gateway.url("/down"));
    await failThreshold("down", Code.Unavailable);

    const error = await rejectionOf(bed.send("down"));

    expect(error.code).toBe(Code.Unavailable);
    expect(error.rawMessage).toContain(`is open after ${FAILURE_THRESHOLD} consecutive gateway failures`);
    expect(error.rawMessage).toContain("Retry after");
    expect(errorInfoOf(error).reason).toBe("CIRCUIT_OPEN");
    expect(errorInfoOf(error).metadata).toEqual({
      integration_id: "down",
      limit: String(FAILURE_THRESHOLD),
      circuit_state: "open",
    });
    expect(retryDelayMsOf(error)).toBeGreaterThan(0);
    expect(retryDelayMsOf(error)).toBeLessThanOrEqual(OPEN_MS);
    expect(error.findDetails(GatewayErrorSchema)).toHaveLength(0);
    expect(bed.gateway.requestsTo("/down")).toHaveLength(FAILURE_THRESHOLD);
    expect(bed.flowState("down")).toMatchObject({ circuit: "open", consecutiveFailures: FAILURE_THRESHOLD });
  });

  test("lets one probe through after the cool-down and closes on success", async () => {
    let recovered = false;
    const probeHeld = deferred();
    bed.gateway.on("/recovering", async () => {
      if (!recovered) {
        return { status: 502 };
      }
      await probeHeld.promise;
      return ACCEPTED;
    });
    await bed.configure("recovering", bed.gateway.url("/recovering"));
    await failThreshold("recovering", Code.Unavailable);
    const delayMs = retryDelayMsOf(await rejectionOf(bed.send("recovering")));

    recovered = true;
    await sleep(delayMs + 20);
    const probe = bed.send("recovering");
    await waitFor(() => bed.gateway.requestsTo("/recovering").length === FAILURE_THRESHOLD + 1, "the probe to reach the gateway");
    const whileProbing = await rejectionOf(bed.send("recovering"));
    probeHeld.resolve();

    await expect(probe).resolves.toMatchObject({ id: "msg-1" });
    expect(whileProbing.code).toBe(Code.Unavailable);
    expect(errorInfoOf(whileProbing).metadata["circuit_state"]).toBe("half_open");
    expect(retryDelayMsOf(whileProbing)).toBeGreaterThan(0);
    expect(bed.gateway.requestsTo("/recovering")).toHaveLength(FAILURE_THRESHOLD + 1);
    await expect(bed.send("recovering")).resolves.toMatchObject({ id: "msg-1" });
    expect(bed.gateway.requestsTo("/recovering")).toHaveLength(FAILURE_THRESHOLD + 2);
    expect(bed.flowState("recovering")).toMatchObject({ circuit: "closed", consecutiveFailures: 0 });
  });

  test("opens again when the probe fails", async () => {
    bed.gateway.on("/still-down", { status: 500 });
    await bed.configure("still-down", bed.gateway.url("/still-down"));
    await failThreshold("still-down", Code.Unavailable);
    const delayMs = retryDelayMsOf(await rejectionOf(bed.send("still-down")));

    await sleep(delayMs + 20);
    const probeError = await rejectionOf(bed.send("still-down"));
    const error = await rejectionOf(bed.send("still-down"));

    expect(probeError.code).toBe(Code.Unavailable);
    expect(probeError.findDetails(GatewayErrorSchema)[0]?.httpStatus).toBe(500);
    expect(errorInfoOf(error).reason).toBe("CIRCUIT_OPEN");
    expect(errorInfoOf(error).metadata["circuit_state"]).toBe("open");
    expect(retryDelayMsOf(error)).toBeGreaterThan(0);
    expect(retryDelayMsOf(error)).toBeLessThanOrEqual(OPEN_MS);
    expect(bed.gateway.requestsTo("/still-down")).toHaveLength(FAILURE_THRESHOLD + 1);
  });

  test("a changed base URL ends the cool-down", async () => {
    bed.gateway.on("/wrong-path", { status: 500 });
    bed.gateway.on("/right-path", ACCEPTED);
    await bed.configure("moved", bed.gateway.url("/wrong-path"));
    await failThreshold("moved", Code.Unavailable);

    await bed.configure("moved", bed.gateway.url("/right-path"));
    const response = await bed.send("moved");

    expect(response.id).not.toBe("");
    expect(bed.flowState("moved")?.circuit).toBe("closed");
    expect(bed.gateway.requestsTo("/right-path")).toHaveLength(1);
  });

  test("a changed display name keeps the cool-down", async () => {
    bed.gateway.on("/renamed", { status: 500 });
    await bed.configure("renamed", bed.gateway.url("/renamed"));
    await failThreshold("renamed", Code.Unavailable);

    await bed.configure("renamed", bed.gateway.url("/renamed"), { displayName: "Renamed gateway" });
    const error = await rejectionOf(bed.send("renamed"));

    expect(errorInfoOf(error).reason).toBe("CIRCUIT_OPEN");
    expect(bed.gateway.requestsTo("/renamed")).toHaveLength(FAILURE_THRESHOLD);
  });

  test("connection failures open it", async () => {
    await bed.configure("refused", await closedLoopbackUrl());
    await failThreshold("refused", Code.Unavailable);

    const error = await rejectionOf(bed.send("refused"));

    expect(errorInfoOf(error).reason).toBe("CIRCUIT_OPEN");
  });

  test("408 replies open it", async () => {
    bed.gateway.on("/request-timeout", { status: 408 });
    await bed.configure("request-timeout", bed.gateway.url("/request-timeout"));
    await failThreshold("request-timeout", Code.Unavailable);

    const error = await rejectionOf(bed.send("request-timeout"));

    expect(errorInfoOf(error).reason).toBe("CIRCUIT_OPEN");
  });

  test("4xx replies do not open it", async () => {
    bed.gateway.on("/bad-request", { status: 400, json: { error: "invalid number" } });
    bed.gateway.on("/bad-key", { status: 401, json: { error: "invalid key" } });
    await bed.configure("bad-request", bed.gateway.url("/bad-request"));
    await bed.configure("bad-key", bed.gateway.url("/bad-key"));

    for (const id of ["bad-request", "bad-key"]) {
      for (let i = 0; i < FAILURE_THRESHOLD + 2; i++) {
        expect((await rejectionOf(bed.send(id))).code).toBe(Code.FailedPrecondition);
      }
    }

    expect(bed.gateway.requestsTo("/bad-request")).toHaveLength(FAILURE_THRESHOLD + 2);
    expect(bed.gateway.requestsTo("/bad-key")).toHaveLength(FAILURE_THRESHOLD + 2);
    expect(bed.flowState("bad-request")).toMatchObject({ circuit: "closed", consecutiveFailures: 0 });
  });

  test("invalid requests do not count", async () => {
    bed.gateway.on("/valid-only", { status: 500 });
    await bed.configure("valid-only", bed.gateway.url("/valid-only"));
    await rejectionOf(bed.send("valid-only"));

    for (let i = 0; i < FAILURE_THRESHOLD; i++) {
      const error = await rejectionOf(
        bed.clients.sms.sendSms({
          integrationId: "valid-only",
          to: "+15550001",
          content: "hello",
          passthrough: { headers: { "X-API-KEY": "override" } },
        }),
      );
      expect(error.code).toBe(Code.InvalidArgument);
    }

    expect(bed.flowState("valid-only")).toMatchObject({ circuit: "closed", consecutiveFailures: 1 });
  });
});

describe("circuit breaker and timeouts", () => {
  const SEND_TIMEOUT_MS = 200;
  let slow: FlowTestBed;

  beforeAll(async () => {
    slow = await startFlowTestBed({
      sendTimeoutMs: SEND_TIMEOUT_MS,
      circuitFailureThreshold: FAILURE_THRESHOLD,
      circuitOpenMs: 60_000,
    });
    slow.gateway.on("/hang", { hang: true });
    await slow.configure("hangs", slow.gateway.url("/hang"));
  });

  afterAll(async () => {
    await slow.stop();
  });

  test("timeouts under a shorter caller deadline do not count", async () => {
    for (let i = 0; i < FAILURE_THRESHOLD + 1; i++) {
      const error = await rejectionOf(slow.send("hangs", { timeoutMs: 100 }));
      expect(error.code).toBe(Code.DeadlineExceeded);
      await waitFor(() => slow.flowState("hangs")?.inFlight === 0, "the send to finish on the server");
    }

    expect(slow.flowState("hangs")).toMatchObject({ circuit: "closed", consecutiveFailures: 0 });
  });

  test("timeouts with the full send time open it", async () => {
    for (let i = 0; i < FAILURE_THRESHOLD; i++) {
      const error = await rejectionOf(slow.send("hangs"));
      expect(error.code).toBe(Code.DeadlineExceeded);
    }
    const before = slow.gateway.requestsTo("/hang").length;

    const error = await rejectionOf(slow.send("hangs"));

    expect(error.code).toBe(Code.Unavailable);
    expect(errorInfoOf(error).reason).toBe("CIRCUIT_OPEN");
    expect(slow.gateway.requestsTo("/hang")).toHaveLength(before);
  });
});

describe("a keyed probe without a deadline", () => {
  /** Short enough that a hanging gateway makes the probe time out with the full send time. */
  const SEND_TIMEOUT_MS = 400;
  const SHORT_OPEN_MS = 300;
  let shortBed: FlowTestBed;

  beforeAll(async () => {
    shortBed = await startFlowTestBed({ circuitFailureThreshold: 1, circuitOpenMs: SHORT_OPEN_MS, sendTimeoutMs: SEND_TIMEOUT_MS });
  });

  afterAll(async () => {
    await shortBed.stop();
  });

  test("that times out opens the circuit again", async () => {
    shortBed.gateway.on("/hangs", { hang: true });
    await shortBed.configure("hangs", shortBed.gateway.url("/hangs"));
    await rejectionOf(shortBed.send("hangs"));
    await waitFor(() => shortBed.flowState("hangs")?.circuit === "half_open", "the cool-down to end", SHORT_OPEN_MS * 10);

    // A keyed send past a circuit that is not closed looks up its key first, then sends as the probe.
    const error = await rejectionOf(shortBed.clients.sms.sendSms({ integrationId: "hangs", to: "+15550001", content: "probe", idempotencyKey: "probe-key" }));

    expect(error.code).toBe(Code.DeadlineExceeded);
    expect(shortBed.flowState("hangs")?.circuit).toBe("open");
    expect(shortBed.service.logLines.some((line) => line.integrationId === "hangs" && line.msg === "circuit opened again because a probe send failed")).toBe(true);
  });
});
