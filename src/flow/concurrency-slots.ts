import { WaiterQueue, type QueuedWaiter } from "./waiter-queue.js";

/** Rejects `ConcurrencySlots.waitForSlot` when its signal aborts before a slot was handed over. No slot is held then. */
export class SlotWaitAbortedError extends Error {
  override readonly name = "SlotWaitAbortedError";

  constructor() {
    super("The send was not made, because its wait for a concurrency slot was aborted.");
  }
}

/**
 * Returns the number of sends in flight, direct sends included, below which
 * a queued send may take a slot. It is the limit less one, so that a direct
 * send finds the last slot free, or 1 for a limit of 1, which has no slot
 * to spare.
 */
export function queuedSendLimit(limit: number): number {
  return Math.max(1, limit - 1);
}

interface SlotWaiter extends QueuedWaiter {
  /** Ends the wait. The slot is already counted as taken for this waiter. */
  grant(): void;
  /** Ends the wait without a slot: `waitForSlot` rejects with `error`. The waiter has already left the queue. */
  fail(error: Error): void;
}

/**
 * The concurrency slots of one integration: the count of sends in flight
 * and a FIFO queue of sends that wait for a slot.
 *
 * A direct send (`SendSms`) takes a free slot or is rejected at once, so its
 * caller gets fast feedback. A queued send (a message of a batch) never
 * takes the last free slot of a limit above 1: it takes a slot while fewer
 * than {@link queuedSendLimit} sends are in flight and no other queued send
 * waits, and otherwise waits in the queue. A send that finishes hands its
 * slot to the first waiter at once when the rule allows, so a queued send
 * that arrives later cannot take it first, and otherwise leaves it free for
 * a direct send. So above a limit of 1, a direct send is rejected only when
 * direct sends took the last slot, or after the limit was lowered below the
 * sends in flight.
 *
 * A limit of 1 has no slot to spare, so queued sends take the only one.
 * There, while sends wait, a direct send that is rejected marks that direct
 * sends need the slot, with the time to keep it for. The slot is then kept
 * free for a direct send the next time it frees, for the longest time noted
 * since it was last kept, and goes to the first waiter if no direct send
 * takes it by then. The time after a kept turn, it goes to a waiter. So at a
 * limit of 1, while sends wait, direct sends get at most every other freed
 * slot, and a slot that no send uses delays the waiters by at most the time
 * noted.
 */
export class ConcurrencySlots {
  readonly #queue = new WaiterQueue<SlotWaiter>();
  #limit: number;
  /** `queuedSendLimit(#limit)`, stored when the limit changes instead of computed for each send. */
  #queuedLimit: number;
  #inFlight = 0;
  /** Runs while the slot of a limit of 1 is kept free for a direct send, and hands it to the first waiter when it fires. */
  #keptSlotTimer: NodeJS.Timeout | undefined;
  /** True when a direct send was rejected at a limit of 1 while sends waited, and the slot has not been kept since. */
  #directSendRejected = false;
  /** Milliseconds to keep the slot the next time it is kept: the longest that rejected direct sends noted since it was last kept. */
  #keepForMs = 0;
  /** True when the slot of a limit of 1 was kept for a direct send the last time it freed while sends waited. */
  #lastSlotKept = false;

  /** @param limit the integration's maximum of sends in flight. */
  constructor(limit: number) {
    this.#limit = limit;
    this.#queuedLimit = queuedSendLimit(limit);
  }

  /** Slots taken: sends in flight, and waiters that were handed a slot and have not started their send yet. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** Queued sends that wait for a slot. */
  get waiting(): number {
    return this.#queue.length;
  }

  /** True when no slot is taken or kept and no send waits. */
  get idle(): boolean {
    return this.#inFlight === 0 && this.#queue.length === 0 && this.#keptSlotTimer === undefined;
  }

  /** Applies the integration's current limit. A raised limit hands the new slots to waiters at once. */
  setLimit(limit: number): void {
    if (limit === this.#limit) {
      return;
    }
    this.#limit = limit;
    this.#queuedLimit = queuedSendLimit(limit);
    if (limit > 1) {
      // Above a limit of 1 the last slot is always left to direct sends, so none is kept on demand.
      this.#forgetKeptSlot();
    }
    this.#handOverFreeSlots();
  }

  /** Tells whether a direct send may take a slot now: a slot is free, or kept for direct sends. */
  hasSlotForDirectSend(): boolean {
    return this.#inFlight < this.#limit;
  }

  /**
   * Records that a direct send found no slot, so that at a limit of 1 the
   * slot is kept for one the next time it frees while sends wait, for at
   * least `keepForMs` milliseconds.
   */
  noteRejectedDirectSend(keepForMs: number): void {
    if (this.#limit === 1 && this.#queue.length > 0) {
      this.#directSendRejected = true;
      this.#keepForMs = Math.max(this.#keepForMs, keepForMs);
    }
  }

  /** Takes a slot for a direct send, the kept slot first. Call only after `hasSlotForDirectSend` returned true. */
  takeForDirectSend(): void {
    this.#inFlight += 1;
    this.#dropKeptSlot();
  }

  /** Takes a slot for a queued send unless it is the last free one or other sends wait. Returns false when the send must wait. */
  takeInTurn(): boolean {
    if (this.#queue.length > 0 || this.#inFlight + this.#keptSlots() >= this.#queuedLimit) {
      return false;
    }
    this.#inFlight += 1;
    return true;
  }

  /**
   * Waits at the back of the queue until a slot is handed over. Once the
   * promise resolves, the slot belongs to the caller, which must `release` it.
   *
   * @throws SlotWaitAbortedError when `signal` aborts first. The waiter has
   *   then left the queue and has no slot.
   * @throws the error given to `endWaits`, which also leaves no slot taken.
   */
  waitForSlot(signal: AbortSignal): Promise<void> {
    if (signal.aborted) {
      return Promise.reject(new SlotWaitAbortedError());
    }
    return new Promise((resolve, reject) => {
      const waiter: SlotWaiter = {
        previous: undefined,
        next: undefined,
        grant: () => {
          signal.removeEventListener("abort", leave);
          resolve();
        },
        fail: (error) => {
          signal.removeEventListener("abort", leave);
          reject(error);
        },
      };
      const leave = (): void => {
        this.#queue.remove(waiter);
        // An emptied queue frees a slot kept for direct sends.
        this.#handOverFreeSlots();
        reject(new SlotWaitAbortedError());
      };
      signal.addEventListener("abort", leave, { once: true });
      this.#queue.push(waiter);
    });
  }

  /** Empties the queue: the wait of every queued send fails with `error`. A slot kept for a direct send is freed too. */
  endWaits(error: Error): void {
    for (let waiter = this.#queue.shift(); waiter !== undefined; waiter = this.#queue.shift()) {
      waiter.fail(error);
    }
    this.#handOverFreeSlots();
  }

  /** Gives back a slot, which goes to the first waiter or stays free for a direct send, following the rules above. */
  release(): void {
    this.#inFlight -= 1;
    this.#handOverFreeSlots();
  }

  #handOverFreeSlots(): void {
    while (this.#queue.length > 0 && this.#inFlight + this.#keptSlots() < this.#queuedLimit) {
      if (this.#directSendRejected && !this.#lastSlotKept && this.#keptSlotTimer === undefined) {
        this.#keepSlot();
        continue;
      }
      const waiter = this.#queue.shift()!;
      this.#inFlight += 1;
      this.#lastSlotKept = false;
      waiter.grant();
    }

    if (this.#queue.length === 0) {
      this.#forgetKeptSlot();
    }
  }

  #keptSlots(): number {
    return this.#keptSlotTimer === undefined ? 0 : 1;
  }

  #keepSlot(): void {
    const keepForMs = this.#keepForMs;
    this.#directSendRejected = false;
    this.#keepForMs = 0;
    this.#lastSlotKept = true;
    this.#keptSlotTimer = setTimeout(() => {
      this.#keptSlotTimer = undefined;
      this.#handOverFreeSlots();
    }, keepForMs);
    this.#keptSlotTimer.unref();
  }

  /** Frees a kept slot and clears the marks of the keeping rule, which applies only at a limit of 1 while sends wait. */
  #forgetKeptSlot(): void {
    this.#dropKeptSlot();
    this.#directSendRejected = false;
    this.#keepForMs = 0;
    this.#lastSlotKept = false;
  }

  #dropKeptSlot(): void {
    if (this.#keptSlotTimer !== undefined) {
      clearTimeout(this.#keptSlotTimer);
      this.#keptSlotTimer = undefined;
    }
  }
}
