import type { Logger } from "pino";

import type { Integration } from "../domain/integration.js";
import { NotFoundError } from "../errors.js";
import type { IntegrationChangeCallback } from "../store/cached-integration-store.js";
import { summarizeDatabaseError } from "../store/storage-error.js";
import type { SendGate } from "./send-gate.js";

/** The part of the integration store that {@link followIntegrationChanges} uses: reads, and a callback on each change. */
export interface ChangingIntegrations {
  get(id: string): Promise<Integration | null>;
  onChange(callback: IntegrationChangeCallback): void;
}

/**
 * Passes integration changes on to the sends that wait for a concurrency
 * slot in `gate`, which would otherwise see a change only once a slot
 * frees. When an integration with waiting sends changes, it is read again
 * (one read per change, which also fills the cache for the sends that
 * follow), and its current limits apply to the waiting sends at once. When
 * it was deleted, the waiting sends fail with the NotFoundError a send of a
 * missing integration gets. Changes of integrations without waiting sends
 * need no read, because each send reads its integration when it starts.
 */
export function followIntegrationChanges(integrations: ChangingIntegrations, gate: SendGate, logger: Logger): void {
  const log = logger.child({ component: "integration-change-follower" });
  /** Number of the latest read of each integration being read, so that an older read that ends last changes nothing. */
  const latestReads = new Map<string, number>();
  let reads = 0;

  const refresh = async (id: string): Promise<void> => {
    const read = ++reads;
    latestReads.set(id, read);
    try {
      const integration = await integrations.get(id);
      if (latestReads.get(id) !== read) {
        return;
      }
      if (integration === null) {
        gate.endWaits(id, new NotFoundError("integration", id));
      } else {
        gate.applyLimits(integration);
      }
    } catch (error) {
      // NOTE: the waiting sends then keep their limits until one of them gets a slot and reads the integration again.
      log.warn({ integrationId: id, err: summarizeDatabaseError(error) }, "reading a changed integration for its waiting sends failed");
    } finally {
      if (latestReads.get(id) === read) {
        latestReads.delete(id);
      }
    }
  };

  integrations.onChange((id) => {
    const changed = id === undefined ? gate.flowStates().map((state) => state.integrationId) : [id];
    for (const integrationId of changed) {
      if (gate.waitingFor(integrationId) > 0) {
        void refresh(integrationId);
      }
    }
  });
}
