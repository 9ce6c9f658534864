import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { SmsService } from "../../gen/smsgateway/v1/sms_service_pb.js";
import { CLIENT_KINDS } from "../helpers/clients.js";
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

/** Service defaults: one send in flight and one send per 10 seconds per integration. */
const DEFAULT_CONCURRENCY = 1;
const DEFAULT_RATE = 0.1;

let bed: FlowTestBed;

beforeAll(async () => {
  bed = await startFlowTestBed({ sendConcurrency: DEFAULT_CONCURRENCY, sendRatePerSecond: DEFAULT_RATE });
});

afterAll(async () => {
  await bed.stop();
});

/** Serves `path` with replies held until the returned release is called. */
function holdingPath(path: string): () => void {
  const release = deferred();
  bed.gateway.on(path, async () => {
    await release.promise;
    return ACCEPTED;
  });
  return release.resolve;
}

async function configure(id: string, path: string, limits: { maxConcurrentSends?: number; maxSendsPerSecond?: number }) {
  await bed.configure(id, bed.gateway.url(path), limits);
}

function requestsTo(path: string) {
  return bed.gateway.requestsTo(path);
}

describe("concurrency limit", () => {
  test("rejects the send past the limit without a POST", async () => {
    const release = holdingPath("/held");
    await configure("held", "/held", { maxConcurrentSends: 2, maxSendsPerSecond: 1000 });
    const inFlight = [bed.send("held"), bed.send("held")];
    await waitFor(() => requestsTo("/held").length === 2, "two sends to reach the gateway");

    const error = await rejectionOf(bed.send("held"));

    expect(error.code).toBe(Code.ResourceExhausted);
    expect(error.rawMessage).toContain('Integration "held" already has 2 sends in flight');
    expect(errorInfoOf(error).reason).toBe("CONCURRENCY_LIMIT");
    expect(errorInfoOf(error).metadata).toEqual({ integration_id: "held", limit: "2" });
    expect(retryDelayMsOf(error)).toBeGreaterThan(0);
    expect(requestsTo("/held")).toHaveLength(2);

    release();
    await Promise.all(inFlight);
    await expect(bed.send("held")).resolves.toMatchObject({ id: "msg-1" });
    expect(requestsTo("/held")).toHaveLength(3);
  });

  test("uses SEND_CONCURRENCY when the field is 0", async () => {
    const release = holdingPath("/held-default");
    await configure("held-default", "/held-default", { maxSendsPerSecond: 1000 });
    const inFlight = bed.send("held-default");
    await waitFor(() => requestsTo("/held-default").length === 1, "the first send to reach the gateway");

    const error = await rejectionOf(bed.send("held-default"));

    expect(error.code).toBe(Code.ResourceExhausted);
    expect(errorInfoOf(error).metadata["limit"]).toBe(String(DEFAULT_CONCURRENCY));
    expect(error.rawMessage).toContain("SEND_CONCURRENCY");
    release();
    await inFlight;
  });

  test.each(CLIENT_KINDS)("details reach $name", async (kind) => {
    const path = `/held-${kind.name.replace(/\W+/g, "-")}`;
    const id = `held${path.toLowerCase().replace(/[^a-z0-9]+/g, "-")}`.slice(0, 63);
    const release = holdingPath(path);
    await configure(id, path, { maxConcurrentSends: 1, maxSendsPerSecond: 1000 });
    const inFlight = bed.send(id);
    await waitFor(() => requestsTo(path).length === 1, "the first send to reach the gateway");
    const { client, close } = kind.create(SmsService, bed.service.baseUrl);

    try {
      const error = await rejectionOf(client.sendSms({ integrationId: id, to: "+15550001", content: "hello" }));

      expect(error.code).toBe(Code.ResourceExhausted);
      expect(errorInfoOf(error).reason).toBe("CONCURRENCY_LIMIT");
      expect(errorInfoOf(error).metadata["integration_id"]).toBe(id);
      expect(retryDelayMsOf(error)).toBeGreaterThan(0);
    } finally {
      close();
      release();
      await inFlight;
    }
    expect(requestsTo(path)).toHaveLength(1);
  });
});

describe("rate limit", () => {
  test("rejects once the burst is used, until the limit is raised", async () => {
    bed.gateway.on("/rated", ACCEPTED);
    await configure("rated", "/rated", { maxSendsPerSecond: 0.1 });
    await bed.send("rated");

    const error = await rejectionOf(bed.send("rated"));

    expect(error.code).toBe(Code.ResourceExhausted);
    expect(error.rawMessage).toContain('Integration "rated" reached its limit of 0.1 sends per second');
    expect(errorInfoOf(error).reason).toBe("RATE_LIMITED");
    expect(errorInfoOf(error).metadata).toEqual({ integration_id: "rated", limit: "0.1" });
    expect(retryDelayMsOf(error)).toBeGreaterThan(0);
    expect(retryDelayMsOf(error)).toBeLessThanOrEqual(10_000);
    expect(error.metadata.get("retry-after")).toBe(String(Math.ceil(retryDelayMsOf(error) / 1000)));
    expect(requestsTo("/rated")).toHaveLength(1);

    await bed.clients.integrations.configureIntegration({
      integration: { id: "rated", maxSendsPerSecond: 1000 },
      updateMask: { paths: ["max_sends_per_second"] },
    });
    // The time since the last send is credited at the new rate: 1000 per second earns a token per millisecond.
    await sleep(5);
    await expect(bed.send("rated")).resolves.toMatchObject({ id: "msg-1" });
    expect(requestsTo("/rated")).toHaveLength(2);
  });

  test("uses SEND_RATE_PER_SECOND when the field is 0", async () => {
    bed.gateway.on("/rated-default", ACCEPTED);
    await configure("rated-default", "/rated-default", {});
    await bed.send("rated-default");

    const error = await rejectionOf(bed.send("rated-default"));

    expect(error.code).toBe(Code.ResourceExhausted);
    expect(errorInfoOf(error).metadata["limit"]).toBe(String(DEFAULT_RATE));
    expect(error.rawMessage).toContain("SEND_RATE_PER_SECOND");
    expect(requestsTo("/rated-default")).toHaveLength(1);
  });
});
