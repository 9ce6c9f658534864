import { keptForRetryMs } from "./retry-delay.js";
import { TokenBucket } from "./token-bucket.js";

/**
 * The rate-limit tokens of one integration: a token bucket that direct
 * sends (`SendSms`) and queued sends (messages of a batch) share.
 *
 * A rejected queued send tries again after its retry delay from inside the
 * service. So it reaches a refilled token before a direct send whose caller
 * retries after the same delay, and a batch would take every token until it
 * ends. Fairness rule, as `ConcurrencySlots` has for the slot of a limit
 * of 1: while queued sends wait for a token, a direct send that is rejected
 * marks that direct sends need one. The next token is then kept for a
 * direct send, from its rejection, for `keptForRetryMs` of its retry delay,
 * which outlasts both the `RetryInfo` delay and the `retry-after` header of
 * the rejection. Meanwhile queued sends take only the tokens
 * beyond it, and when no direct send comes back by then, they get it. A
 * token is kept again only after a queued send has taken one, so at most
 * every other token taken is a kept one.
 */
export class RateTokens {
  readonly #bucket: TokenBucket;
  /** Clock time until which the latest rejected queued send waits before it tries again. */
  #queuedWaitEndsMs = Number.NEGATIVE_INFINITY;
  /** Clock time until which one token is kept for direct sends, undefined while none is. */
  #keptUntilMs: number | undefined;
  /** True from the time a token is kept until a queued send takes a token. */
  #lastTokenKept = false;

  /** Creates a full bucket. `ratePerSecond` must be positive and finite. */
  constructor(ratePerSecond: number, nowMs: number) {
    this.#bucket = new TokenBucket(ratePerSecond, nowMs);
  }

  /** Changes the rate, as `TokenBucket.setRate` does. */
  setRate(ratePerSecond: number): void {
    this.#bucket.setRate(ratePerSecond);
  }

  /** Returns true when new tokens would behave the same: the bucket is full and no token is kept. */
  isFull(nowMs: number): boolean {
    this.#dropExpiredKeptToken(nowMs);
    return this.#keptUntilMs === undefined && this.#bucket.isFull(nowMs);
  }

  /**
   * Takes a token for a direct send, the kept one first, and returns 0. When
   * none is available, takes nothing, keeps the next token for direct sends
   * if the fairness rule allows, and returns the milliseconds until a token is.
   */
  tryTakeForDirectSend(nowMs: number): number {
    this.#dropExpiredKeptToken(nowMs);
    const waitMs = this.#bucket.tryTake(nowMs);
    if (waitMs === 0) {
      this.#keptUntilMs = undefined;
      return 0;
    }

    if (nowMs < this.#queuedWaitEndsMs && this.#keptUntilMs === undefined && !this.#lastTokenKept) {
      this.#keptUntilMs = nowMs + keptForRetryMs(waitMs);
      this.#lastTokenKept = true;
    }
    return waitMs;
  }

  /**
   * Takes a token for a queued send, leaving a kept token alone, and returns
   * 0. Otherwise takes nothing and returns the milliseconds until the send
   * may try again: until a token beyond the kept one refills, or the kept
   * token is released, whichever comes first.
   */
  tryTakeForQueuedSend(nowMs: number): number {
    this.#dropExpiredKeptToken(nowMs);
    const keptUntilMs = this.#keptUntilMs;
    let waitMs = this.#bucket.tryTake(nowMs, keptUntilMs === undefined ? 0 : 1);
    if (waitMs === 0) {
      this.#lastTokenKept = false;
      return 0;
    }

    if (keptUntilMs !== undefined) {
      waitMs = Math.min(waitMs, Math.ceil(keptUntilMs - nowMs));
    }
    this.#queuedWaitEndsMs = Math.max(this.#queuedWaitEndsMs, nowMs + waitMs);
    return waitMs;
  }

  /** Puts back a token that a send took and did not use, as `TokenBucket.giveBack` does. */
  giveBack(nowMs: number): void {
    this.#bucket.giveBack(nowMs);
  }

  #dropExpiredKeptToken(nowMs: number): void {
    if (this.#keptUntilMs !== undefined && nowMs >= this.#keptUntilMs) {
      this.#keptUntilMs = undefined;
    }
  }
}
