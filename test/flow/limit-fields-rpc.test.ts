import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { BadRequestSchema } from "../../gen/smsgateway/v1/errors_pb.js";
import { startTestService, type TestService } from "../helpers/service.js";
import { connectClients, integrationFor, rejectionOf, type ServiceClients } from "./flow-fixtures.js";

const BASE_URL = "http://127.0.0.1:9/sms";

let service: TestService;
let clients: ServiceClients;

beforeAll(async () => {
  service = await startTestService();
  clients = connectClients(service.baseUrl);
});

afterAll(async () => {
  await service.stop();
});

describe("ConfigureIntegration limit fields", () => {
  test.each([
    { name: "negative max_concurrent_sends", limits: { maxConcurrentSends: -1 }, field: "max_concurrent_sends" },
    { name: "max_concurrent_sends over 10000", limits: { maxConcurrentSends: 10_001 }, field: "max_concurrent_sends" },
    { name: "negative max_sends_per_second", limits: { maxSendsPerSecond: -0.5 }, field: "max_sends_per_second" },
    { name: "NaN max_sends_per_second", limits: { maxSendsPerSecond: Number.NaN }, field: "max_sends_per_second" },
    { name: "infinite max_sends_per_second", limits: { maxSendsPerSecond: Number.POSITIVE_INFINITY }, field: "max_sends_per_second" },
    { name: "max_sends_per_second below 0.01", limits: { maxSendsPerSecond: 0.001 }, field: "max_sends_per_second" },
    { name: "max_sends_per_second over 100000", limits: { maxSendsPerSecond: 100_001 }, field: "max_sends_per_second" },
  ])("rejects $name", async ({ limits, field }) => {
    const error = await rejectionOf(clients.integrations.configureIntegration({ integration: integrationFor("", BASE_URL, limits) }));

    expect(error.code).toBe(Code.InvalidArgument);
    const fields = error.findDetails(BadRequestSchema).flatMap((detail) => detail.fieldViolations.map((v) => v.field));
    expect(fields).toEqual([`integration.${field}`]);
    expect(error.rawMessage).toContain(`integration.${field}`);
    expect(error.rawMessage).toMatch(/use 0 for the service default/);
  });

  test("NaN is named in the message", async () => {
    const error = await rejectionOf(
      clients.integrations.configureIntegration({ integration: integrationFor("", BASE_URL, { maxSendsPerSecond: Number.NaN }) }),
    );

    expect(error.rawMessage).toContain("NaN is not a finite number");
  });

  test("stores and returns the limits", async () => {
    const limits = { maxConcurrentSends: 10_000, maxSendsPerSecond: 0.25 };

    const created = await clients.integrations.configureIntegration({ integration: integrationFor("", BASE_URL, limits) });
    const read = await clients.integrations.getIntegration({ id: created.integration?.id ?? "" });

    expect(created.integration).toMatchObject(limits);
    expect(read.integration).toMatchObject(limits);
  });

  test("defaults to 0", async () => {
    const created = await clients.integrations.configureIntegration({ integration: integrationFor("", BASE_URL) });

    expect(created.integration).toMatchObject({ maxConcurrentSends: 0, maxSendsPerSecond: 0 });
  });

  test("update mask changes one limit", async () => {
    await clients.integrations.configureIntegration({
      integration: integrationFor("masked", BASE_URL, { maxConcurrentSends: 5, maxSendsPerSecond: 2 }),
      allowMissing: true,
    });

    const updated = await clients.integrations.configureIntegration({
      integration: { id: "masked", maxSendsPerSecond: 7.5 },
      updateMask: { paths: ["maxSendsPerSecond"] },
    });

    expect(updated.integration).toMatchObject({ maxConcurrentSends: 5, maxSendsPerSecond: 7.5 });
  });

  test("rejected update keeps the stored limits", async () => {
    await clients.integrations.configureIntegration({
      integration: integrationFor("kept", BASE_URL, { maxConcurrentSends: 3 }),
      allowMissing: true,
    });

    const error = await rejectionOf(
      clients.integrations.configureIntegration({
        integration: { id: "kept", maxConcurrentSends: -3 },
        updateMask: { paths: ["max_concurrent_sends"] },
      }),
    );

    expect(error.code).toBe(Code.InvalidArgument);
    expect((await clients.integrations.getIntegration({ id: "kept" })).integration?.maxConcurrentSends).toBe(3);
  });
});
