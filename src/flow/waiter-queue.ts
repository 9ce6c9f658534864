/** One entry of a {@link WaiterQueue}. */
export interface QueuedWaiter {
  previous: QueuedWaiter | undefined;
  next: QueuedWaiter | undefined;
}

/**
 * A FIFO queue as a doubly linked list, so that a waiter that gives up
 * leaves it in constant time from any position.
 */
export class WaiterQueue<W extends QueuedWaiter> {
  #head: W | undefined;
  #tail: W | undefined;
  #length = 0;

  get length(): number {
    return this.#length;
  }

  /** Adds `waiter` at the back. It must not be in a queue already. */
  push(waiter: W): void {
    waiter.previous = this.#tail;
    waiter.next = undefined;
    if (this.#tail === undefined) {
      this.#head = waiter;
    } else {
      this.#tail.next = waiter;
    }
    this.#tail = waiter;
    this.#length += 1;
  }

  /** Removes and returns the waiter at the front, or undefined when the queue is empty. */
  shift(): W | undefined {
    const waiter = this.#head;
    if (waiter !== undefined) {
      this.remove(waiter);
    }
    return waiter;
  }

  /** Removes `waiter`, which must be in this queue. */
  remove(waiter: W): void {
    if (waiter.previous === undefined) {
      this.#head = waiter.next as W | undefined;
    } else {
      waiter.previous.next = waiter.next;
    }
    if (waiter.next === undefined) {
      this.#tail = waiter.previous as W | undefined;
    } else {
      waiter.next.previous = waiter.previous;
    }
    waiter.previous = undefined;
    waiter.next = undefined;
    this.#length -= 1;
  }
}
