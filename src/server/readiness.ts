import type { Logger } from "pino";
import { summarizeDatabaseError } from "../store/storage-error.js";
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
  private pendingPing: Promise<string | undefined> | undefined;
  private lastReady = true;

  constructor(
    private readonly store: { ping(): Promise<void> },
    private readonly lifecycle: ServiceLifecycle,
    private readonly logger: Logger,
    private readonly pingTimeoutMs = STORE_PING_TIMEOUT_MS,
  ) {}

  async check(): Promise<Readiness> {
    const reason = this.lifecycle.shuttingDown ? "the service is shutting down" : await this.pingStore();
    const ready = reason === undefined;
    if (ready !== this.lastReady) {
      this.lastReady = ready;
      if (ready) {
        this.logger.info("ready again: storage responds to pings");
      } else {
        this.logger.warn({ reason }, "not ready");
      }
    }
    return reason === undefined ? { ready: true } : { ready: false, reason };
  }

  /** Pings storage. Returns undefined when it responded in time, else the reason. */
  private async pingStore(): Promise<string | undefined> {
    this.pendingPing ??= this.store.ping().then(
      () => undefined,
      (error: unknown) => {
        const { code } = summarizeDatabaseError(error);
        this.logger.warn({ err: summarizeDatabaseError(error) }, "storage ping failed");
        return code === undefined ? "storage is unreachable" : `storage is unreachable (${code})`;
      },
    );
    const ping = this.pendingPing;
    void ping.finally(() => {
      if (this.pendingPing === ping) {
        this.pendingPing = undefined;
      }
    });

    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<string>((resolve) => {
      timer = setTimeout(() => resolve(`storage did not answer within ${this.pingTimeoutMs} ms`), this.pingTimeoutMs);
    });
    try {
      return await Promise.race([ping, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }
}
