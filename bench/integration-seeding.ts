/**
 * Fills a service with many integrations before it is measured: stores them
 * through ConfigureIntegration, then sends one SMS through each, so every
 * one is read once and the measured runs find them in the service's cache.
 */
import { performance } from "node:perf_hooks";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { IntegrationService } from "../gen/smsgateway/v1/integration_service_pb.js";
import { SmsService } from "../gen/smsgateway/v1/sms_service_pb.js";
import { benchIntegration } from "./request-bodies.js";

/** Calls in flight while seeding. */
export const SEEDING_IN_FLIGHT = 16;

/** How long each step of {@link seedIntegrations} took. */
export interface SeedingTimes {
  storeMs: number;
  firstSendMs: number;
}

/**
 * Stores one integration per id, all sending to the gateway, and then sends
 * one SMS through each, over Connect HTTP/1.1.
 * @throws Error naming the id whose call failed.
 */
export async function seedIntegrations(baseUrl: string, gatewayUrl: string, ids: readonly string[]): Promise<SeedingTimes> {
  const transport = createConnectTransport({ baseUrl, httpVersion: "1.1" });
  const integrations = createClient(IntegrationService, transport);
  const sms = createClient(SmsService, transport);

  const storeStart = performance.now();
  await forEachInFlight(ids, SEEDING_IN_FLIGHT, async (id) => {
    await integrations.configureIntegration({ integration: benchIntegration(id, gatewayUrl), allowMissing: true });
  });
  const firstSendStart = performance.now();
  await forEachInFlight(ids, SEEDING_IN_FLIGHT, async (id) => {
    await sms.sendSms({ integrationId: id, to: "+15550100000", content: "seeding" });
  });
  return { storeMs: firstSendStart - storeStart, firstSendMs: performance.now() - firstSendStart };
}

/** Calls `call` on every item with at most `inFlight` calls at once. @throws Error naming the first item whose call failed. */
async function forEachInFlight(items: readonly string[], inFlight: number, call: (item: string) => Promise<void>): Promise<void> {
  let next = 0;
  let failed = false;
  const worker = async () => {
    for (let index = next++; index < items.length && !failed; index = next++) {
      const item = items[index]!;
      try {
        await call(item);
      } catch (error) {
        failed = true;
        throw new Error(`seeding failed at ${item}: ${error instanceof Error ? error.message : String(error)}`);
      }
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
}
