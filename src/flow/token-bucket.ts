/**
 * A token bucket: tokens refill continuously at `ratePerSecond` and each
 * send takes one. The bucket has room for one second's worth of tokens,
 * and at least one, so a rate of 5 allows a burst of 5 and a rate of 0.5 a burst
 * of 1.
 *
 * Times are milliseconds from a monotonic clock supplied by the caller, so
 * the bucket needs no timers and tests can drive it.
 */
export class TokenBucket {
  #ratePerSecond: number;
  #capacity: number;
  #tokens: number;
  #updatedAtMs: number;

  /** Creates a full bucket. `ratePerSecond` must be positive and finite. */
  constructor(ratePerSecond: number, nowMs: number) {
    this.#ratePerSecond = ratePerSecond;
    this.#capacity = capacityFor(ratePerSecond);
    this.#tokens = this.#capacity;
    this.#updatedAtMs = nowMs;
  }

  get ratePerSecond(): number {
    return this.#ratePerSecond;
  }

  /**
   * Changes the rate. The time since the last refill is credited at the new
   * rate, so a raised rate applies to the next send at once, and tokens are
   * cut to the new capacity, so a lowered rate never grants a new burst.
   */
  setRate(ratePerSecond: number): void {
    this.#ratePerSecond = ratePerSecond;
    this.#capacity = capacityFor(ratePerSecond);
    this.#tokens = Math.min(this.#tokens, this.#capacity);
  }

  /**
   * Takes one token and returns 0, or, when none is available, takes nothing
   * and returns the milliseconds until one is (at least 1). With `keep`,
   * takes the token only when `keep` whole tokens are left after it, and
   * returns the milliseconds until that is so: Infinity when the bucket
   * cannot hold `keep + 1` tokens.
   */
  tryTake(nowMs: number, keep = 0): number {
    this.#refill(nowMs);
    const needed = keep + 1;
    if (this.#tokens >= needed) {
      this.#tokens -= 1;
      return 0;
    }
    if (needed > this.#capacity) {
      return Number.POSITIVE_INFINITY;
    }
    return Math.max(1, Math.ceil(((needed - this.#tokens) / this.#ratePerSecond) * 1000));
  }

  /**
   * Puts back one token that a send took and did not use. The bucket never
   * contains more than its capacity, so a token that refilled meanwhile is not
   * added twice.
   */
  giveBack(nowMs: number): void {
    this.#refill(nowMs);
    this.#tokens = Math.min(this.#capacity, this.#tokens + 1);
  }

  /** Returns true when a new bucket would behave the same: no token is missing. */
  isFull(nowMs: number): boolean {
    this.#refill(nowMs);
    return this.#tokens >= this.#capacity;
  }

  #refill(nowMs: number): void {
    const elapsedMs = Math.max(0, nowMs - this.#updatedAtMs);
    this.#tokens = Math.min(this.#capacity, this.#tokens + (elapsedMs / 1000) * this.#ratePerSecond);
    this.#updatedAtMs = Math.max(this.#updatedAtMs, nowMs);
  }
}

function capacityFor(ratePerSecond: number): number {
  return Math.max(1, ratePerSecond);
}
