import { Dispatcher } from "undici";

type DispatchHandler = Dispatcher.DispatchHandler;

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
 * Create one per request and call its `request` method, which undici's
 * Dispatcher provides. It forwards to the pooled dispatcher and owns no
 * connection.
 */
export class WriteTracker extends Dispatcher {
  /** True once undici began writing the request to a socket. */
  writeStarted = false;

  constructor(private readonly pool: Dispatcher) {
    super();
  }

  override dispatch(options: Dispatcher.DispatchOptions, handler: DispatchHandler): boolean {
    const tracked = handler.onRequestStart === undefined ? new TrackedLegacyHandler(handler, this) : new TrackedHandler(handler, this);
    return this.pool.dispatch(options, tracked);
  }
}

// The two wrappers below forward each callback of one handler API as a plain
// method. A Proxy would serve both APIs, but it binds a new function on every
// callback that undici looks up, several times per request.

/** Forwards undici's newer handler API, marking the write start in `onRequestStart`. */
class TrackedHandler implements DispatchHandler {
  constructor(
    private readonly inner: DispatchHandler,
    private readonly tracker: WriteTracker,
  ) {}

  onRequestStart(...args: Parameters<NonNullable<DispatchHandler["onRequestStart"]>>): void {
    this.tracker.writeStarted = true;
    this.inner.onRequestStart?.(...args);
  }

  onRequestUpgrade(...args: Parameters<NonNullable<DispatchHandler["onRequestUpgrade"]>>): void {
    this.inner.onRequestUpgrade?.(...args);
  }

  onResponseStart(...args: Parameters<NonNullable<DispatchHandler["onResponseStart"]>>): void {
    this.inner.onResponseStart?.(...args);
  }

  onResponseData(...args: Parameters<NonNullable<DispatchHandler["onResponseData"]>>): void {
    this.inner.onResponseData?.(...args);
  }

  onResponseEnd(...args: Parameters<NonNullable<DispatchHandler["onResponseEnd"]>>): void {
    this.inner.onResponseEnd?.(...args);
  }

  onResponseError(...args: Parameters<NonNullable<DispatchHandler["onResponseError"]>>): void {
    this.inner.onResponseError?.(...args);
  }
}

/**
 * Forwards undici's older handler API, which its `request` function uses,
 * marking the write start in `onConnect`. A callback that the wrapped
 * handler lacks is a no-op here, which undici treats like a missing one.
 */
class TrackedLegacyHandler implements DispatchHandler {
  constructor(
    private readonly inner: DispatchHandler,
    private readonly tracker: WriteTracker,
  ) {}

  onConnect(...args: Parameters<NonNullable<DispatchHandler["onConnect"]>>): void {
    this.tracker.writeStarted = true;
    this.inner.onConnect?.(...args);
  }

  onError(error: Error): void {
    this.inner.onError?.(error);
  }

  onUpgrade(...args: Parameters<NonNullable<DispatchHandler["onUpgrade"]>>): void {
    this.inner.onUpgrade?.(...args);
  }

  onResponseStarted(): void {
    this.inner.onResponseStarted?.();
  }

  onHeaders(...args: Parameters<NonNullable<DispatchHandler["onHeaders"]>>): boolean {
    return this.inner.onHeaders?.(...args) ?? true;
  }

  onData(chunk: Buffer): boolean {
    return this.inner.onData?.(chunk) ?? true;
  }

  onComplete(trailers: string[] | null): void {
    this.inner.onComplete?.(trailers);
  }

  onBodySent(chunkSize: number, totalBytesSent: number): void {
    this.inner.onBodySent?.(chunkSize, totalBytesSent);
  }
}
