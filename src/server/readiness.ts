import type { Logger } from "pino";
import { summarizeDatabaseError, type DatabaseErrorSummary } from "../store/storage-error.js";
import type { ServiceLifecycle } from "./service-lifecycle.js";

/**
 * Maximum wait for the storage ping, in milliseconds. Probes such as
 * Kubernetes' give up after about a second by default, so a longer wait
 * would only pile up probes against a stuck database.
 */
export const STORE_PING_TIMEOUT_MS = 2_000;

/** Result of a readiness check: ready, or why not. */
export type Readiness = { ready: true } | { ready: false; reason: string };

/**
 * Decides whether the service should get traffic: storage responds to a
 * ping and shutdown has not begun.
 *
 * Probes that arrive while a ping is running share it, so a slow database
 * sees one ping at a time. The log gets one line when readiness changes,
 * not one per probe.
 */
export class ReadinessProbe {
  private pendingPing: Promise<NotReady | undefined> | undefined;
  private lastReady = true;

  constructor(
    private readonly store: { ping(): Promise<void> },
    private readonly lifecycle: ServiceLifecycle,
    private readonly logger: Logger,
    private readonly pingTimeoutMs = STORE_PING_TIMEOUT_MS,
  ) {}

  async check(): Promise<Readiness> {
    const notReady = this.lifecycle.shuttingDown ? { reason: "the service is shutting down" } : await this.pingStore();
    const ready = notReady === undefined;
    if (ready !== this.lastReady) {
      this.lastReady = ready;
      if (notReady === undefined) {
        this.logger.info("ready again: storage responds to pings");
      } else {
        this.logger.warn(notReady, "not ready");
      }
    }
    return notReady === undefined ? { ready: true } : { ready: false, reason: notReady.reason };
  }

  /** Pings storage. Returns undefined when it responded in time, else why not. */
  private async pingStore(): Promise<NotReady | undefined> {
    if (this.pendingPing === undefined) {
      const ping = this.store.ping().then(
        () => undefined,
        (error: unknown): NotReady => {
          const summary = summarizeDatabaseError(error);
          const reason = summary.code === undefined ? "storage is unreachable" : `storage is unreachable (${summary.code})`;
          return { reason, err: summary };
        },
      );
      this.pendingPing = ping;
      void ping.finally(() => {
        if (this.pendingPing === ping) {
          this.pendingPing = undefined;
        }
      });
    }

    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<NotReady>((resolve) => {
      timer = setTimeout(() => resolve({ reason: `storage did not respond within ${this.pingTimeoutMs} ms` }), this.pingTimeoutMs);
    });
    try {
      return await Promise.race([this.pendingPing, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }
}

/** Reason the service is not ready, with the storage error's safe summary when there was one. */
interface NotReady {
  reason: string;
  err?: DatabaseErrorSummary;
}
