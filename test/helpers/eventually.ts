/** The accepted value of {@link eventually}, and how long after the start it came. */
export interface Eventual<T> {
  value: T;
  elapsedMs: number;
}

/**
 * Calls `probe` every `intervalMs` until `accept` holds for what it
 * returns. Rejects, naming `description` and the last value, when that
 * takes more than `timeoutMs`.
 */
export async function eventually<T>(
  probe: () => Promise<T>,
  accept: (value: T) => boolean,
  description: string,
  { timeoutMs, intervalMs = 20 }: { timeoutMs: number; intervalMs?: number },
): Promise<Eventual<T>> {
  const started = Date.now();
  for (;;) {
    const value = await probe();
    const elapsedMs = Date.now() - started;
    if (accept(value)) {
      return { value, elapsedMs };
    }
    if (elapsedMs > timeoutMs) {
      throw new Error(`${description}: not within ${timeoutMs} ms; last value: ${JSON.stringify(value)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
