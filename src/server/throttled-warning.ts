import { performance } from "node:perf_hooks";
import type { Logger } from "pino";

/** Shortest time in milliseconds between two lines of one {@link ThrottledWarning}. */
export const THROTTLED_WARNING_INTERVAL_MS = 60_000;

/**
 * A warning that a caller can cause at will, such as a failed connection
 * attempt, logged at most once per interval so that a scanner cannot flood
 * the log. Each line counts the occurrences since the previous line that
 * were not logged, in `unloggedSinceLastLine`.
 */
export class ThrottledWarning {
  private lastLoggedAt = Number.NEGATIVE_INFINITY;
  private unlogged = 0;

  constructor(
    private readonly logger: Logger,
    private readonly message: string,
    private readonly intervalMs = THROTTLED_WARNING_INTERVAL_MS,
  ) {}

  /** Logs the warning with `fields`, unless a line went out less than the interval ago. */
  record(fields: Record<string, unknown>): void {
    const now = performance.now();
    if (now - this.lastLoggedAt < this.intervalMs) {
      this.unlogged++;
      return;
    }
    this.logger.warn({ ...fields, unloggedSinceLastLine: this.unlogged }, this.message);
    this.lastLoggedAt = now;
    this.unlogged = 0;
  }
}
