import { Dispatcher } from "undici";

/**
 * A per-request undici dispatcher that notes whether the request started
 * to be written to a connected socket.
 *
 * undici calls a handler's `onConnect` (or `onRequestStart` in its newer
 * handler API, which it translates both ways) on a connected socket just
 * before it writes the request. A request that failed before that call
 * never reached the gateway, so it can be retried without risking a second
 * SMS. After that call the gateway may have received it, so a failure
 * leaves the outcome unknown.
 *
 * Create one per request and pass it as the `dispatcher` option of undici's
 * `request`. It forwards to the pooled dispatcher and owns no connection.
 */
export class WriteTracker extends Dispatcher {
  /** True once undici began writing the request to a socket. */
  writeStarted = false;

  constructor(private readonly pool: Dispatcher) {
    super();
  }

  override dispatch(options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    return this.pool.dispatch(options, this.tracked(handler));
  }

  /** Wraps a handler so that its write-start callbacks set `writeStarted` first. */
  private tracked(handler: Dispatcher.DispatchHandler): Dispatcher.DispatchHandler {
    const markStarted = (): void => {
      this.writeStarted = true;
    };
    // A Proxy forwards every other callback unchanged, whichever handler API undici uses.
    return new Proxy(handler, {
      get(target, property) {
        const value: unknown = Reflect.get(target, property, target);
        if (typeof value !== "function") {
          return value;
        }
        if (property === "onConnect" || property === "onRequestStart") {
          return (...args: unknown[]) => {
            markStarted();
            return (value as (...args: unknown[]) => unknown).apply(target, args);
          };
        }
        return (value as (...args: unknown[]) => unknown).bind(target);
      },
    });
  }
}
