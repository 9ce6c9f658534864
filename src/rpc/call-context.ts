import type { Logger } from "pino";

/**
 * Call facts an RPC handler may use, whichever server library received the
 * call. Handlers depend on this, never on Connect or grpc-js types.
 */
export interface CallContext {
  /** Full procedure name, for example `smsgateway.v1.SmsService/SendSms`. */
  readonly procedure: string;
  /**
   * Aborts when the caller cancels, goes away or its deadline passes.
   *
   * NOTE: calls served by grpc-js get the signal of a `LightAbortController`, which
   * `AbortSignal.any` accepts but never follows. Combine it with other signals
   * through an abort listener, as `SendDeadline` does.
   */
  readonly signal: AbortSignal;
  /** Returns the milliseconds left before the caller's deadline, or undefined without one. */
  timeoutMs(): number | undefined;
  /** Returns a request header (or metadata) value, or null when absent. */
  requestHeader(name: string): string | null;
  readonly requestId: string;
  /** Logger bound to this call's procedure; the service logger adds the request id to every line of the call. */
  readonly log: Logger;
  /**
   * Fields that the pipeline adds to the call's `rpc finished` or `rpc failed`
   * line, such as the integration and the gateway's message id of a send.
   * The handler sets them; they must hold no secrets.
   */
  logFields?: Record<string, unknown>;
}

/** One unary RPC implementation over plain protobuf-es messages. */
export type UnaryHandler<Request = unknown, Response = unknown> = (
  request: Request,
  context: CallContext,
) => Promise<Response>;
