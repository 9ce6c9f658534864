import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import {
  Health,
  HealthCheckRequestSchema,
  HealthCheckResponse_ServingStatus as ServingStatus,
  HealthCheckResponseSchema,
  type HealthCheckResponse,
} from "../../gen/grpc/health/v1/health_pb.js";
import { CLIENT_KINDS } from "../helpers/clients.js";
import { startTestService, type TestService } from "../helpers/service.js";

const OUR_SERVICES = ["", "smsgateway.v1.IntegrationService", "smsgateway.v1.SmsService"];

let service: TestService;

beforeAll(async () => {
  service = await startTestService();
});

afterAll(async () => {
  await service.stop();
});

describe.each(CLIENT_KINDS)("Health.Check over $name", (kind) => {
  test.each(OUR_SERVICES)("SERVING for '%s'", async (name) => {
    const health = kind.create(Health, service.baseUrl);
    try {
      const response = await health.client.check({ service: name });
      expect(response.status).toBe(ServingStatus.SERVING);
    } finally {
      health.close();
    }
  });

  test("NOT_FOUND for an unknown service", async () => {
    const health = kind.create(Health, service.baseUrl);
    try {
      const check = health.client.check({ service: "smsgateway.v1.NoSuchService" });
      await expect(check).rejects.toMatchObject({ code: Code.NotFound, rawMessage: expect.stringContaining("smsgateway.v1.NoSuchService") });
      const error = await check.then(
        () => undefined,
        (thrown: unknown) => ConnectError.from(thrown),
      );
      // connect-node percent-encodes grpc-message more than grpc-js decodes, so the grpc-js client shows %3B for ";".
      expect(decodeURIComponent(error?.rawMessage ?? "")).toContain("or name one of smsgateway.v1.IntegrationService, smsgateway.v1.SmsService");
    } finally {
      health.close();
    }
  });
});

test("Health.List returns every service", async () => {
  const client = createClient(Health, createConnectTransport({ baseUrl: service.baseUrl, httpVersion: "1.1" }));

  const { statuses } = await client.list({});

  expect(Object.keys(statuses).sort()).toEqual(OUR_SERVICES);
  for (const name of OUR_SERVICES) {
    expect(statuses[name]?.status).toBe(ServingStatus.SERVING);
  }
});

/** Reads messages from a server stream into an array as they arrive; `ended` settles with the stream. */
function collect(stream: AsyncIterable<HealthCheckResponse>): { statuses: ServingStatus[]; ended: Promise<ConnectError | undefined> } {
  const statuses: ServingStatus[] = [];
  const ended = (async () => {
    try {
      for await (const message of stream) {
        statuses.push(message.status);
      }
      return undefined;
    } catch (error) {
      return ConnectError.from(error);
    }
  })();
  return { statuses, ended };
}

async function waitFor(condition: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 1_000; i++) {
    if (condition()) {
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe("Health.Watch", () => {
  test("unknown service streams SERVICE_UNKNOWN, then its status", async () => {
    const client = createClient(Health, createConnectTransport({ baseUrl: service.baseUrl, httpVersion: "2" }));
    const abort = new AbortController();
    const watch = collect(client.watch({ service: "example.v1.LateService" }, { signal: abort.signal }));

    await waitFor(() => watch.statuses.length === 1, "the first status");
    service.app.health.set("example.v1.LateService", ServingStatus.SERVING);
    await waitFor(() => watch.statuses.length === 2, "the second status");
    abort.abort();

    expect(watch.statuses).toEqual([ServingStatus.SERVICE_UNKNOWN, ServingStatus.SERVING]);
    expect((await watch.ended)?.code).toBe(Code.Canceled);
  });

  test("sends only changes", async () => {
    const client = createClient(Health, createGrpcWebTransport({ baseUrl: service.baseUrl, httpVersion: "1.1" }));
    const abort = new AbortController();
    const watch = collect(client.watch({ service: "example.v1.Flapping" }, { signal: abort.signal }));

    await waitFor(() => watch.statuses.length === 1, "the first status");
    service.app.health.set("example.v1.Flapping", ServingStatus.NOT_SERVING);
    service.app.health.set("example.v1.Flapping", ServingStatus.NOT_SERVING);
    service.app.health.set("example.v1.Flapping", ServingStatus.SERVING);
    await waitFor(() => watch.statuses.at(-1) === ServingStatus.SERVING, "the last status");
    abort.abort();
    await watch.ended;

    expect(watch.statuses[0]).toBe(ServingStatus.SERVICE_UNKNOWN);
    expect(watch.statuses).not.toContain(ServingStatus.UNKNOWN);
    for (let i = 1; i < watch.statuses.length; i++) {
      expect(watch.statuses[i]).not.toBe(watch.statuses[i - 1]);
    }
  });

  test("shutdown turns every watch NOT_SERVING, then ends it", async () => {
    const own = await startTestService();
    const connectClient = createClient(Health, createConnectTransport({ baseUrl: own.baseUrl, httpVersion: "2" }));
    const overall = collect(connectClient.watch({ service: "" }));
    const sms = collect(connectClient.watch({ service: "smsgateway.v1.SmsService" }));
    const grpcWatch = watchOverGrpcJs(own.baseUrl, "smsgateway.v1.IntegrationService");
    await waitFor(
      () => overall.statuses.length === 1 && sms.statuses.length === 1 && grpcWatch.statuses.length === 1,
      "the first statuses",
    );

    // With a grace period far beyond the test timeout, close returns in time
    // only because the watches end as soon as shutdown begins.
    await own.app.close(60_000);
    await own.stop();

    for (const watch of [overall, sms, grpcWatch]) {
      expect(watch.statuses).toEqual([ServingStatus.SERVING, ServingStatus.NOT_SERVING]);
      expect((await watch.ended)?.code).toBe(Code.Unavailable);
    }
  });
});

/** Watches one service over native gRPC with grpc-js, in the shape of {@link collect}. */
function watchOverGrpcJs(baseUrl: string, name: string): ReturnType<typeof collect> {
  const client = new grpc.Client(new URL(baseUrl).host, grpc.credentials.createInsecure());
  const call = client.makeServerStreamRequest(
    "/grpc.health.v1.Health/Watch",
    (message: { service: string }) => Buffer.from(toBinary(HealthCheckRequestSchema, create(HealthCheckRequestSchema, message))),
    (bytes: Buffer) => fromBinary(HealthCheckResponseSchema, bytes),
    { service: name },
  );
  const statuses: ServingStatus[] = [];
  call.on("data", (message: HealthCheckResponse) => statuses.push(message.status));
  const ended = new Promise<ConnectError | undefined>((resolve) => {
    call.on("error", (error: grpc.ServiceError) => resolve(new ConnectError(error.details, error.code as number)));
    call.on("end", () => resolve(undefined));
  }).finally(() => client.close());
  return { statuses, ended };
}
