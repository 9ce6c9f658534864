import { performance } from "node:perf_hooks";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Logger } from "pino";
import type { ServiceMetrics } from "../observability/metrics.js";
import { REQUEST_ID_HEADER, resolveRequestId } from "../observability/request-id.js";
import type { ServiceLifecycle } from "../server/service-lifecycle.js";
import type { CallContext, UnaryHandler } from "./call-context.js";
import { causeToLog, isServerFault, toConnectError } from "./error-mapping.js";
import { deadlineSlackMs } from "../dispatch/send-deadline.js";
import { GraceEndedError } from "../errors.js";

/** Incoming call as a server library hands it to the pipeline. */
export interface IncomingCall {
  /** Server library that received the call, such as `connect-node` or `grpc-js`; logged with the call. */
  readonly server: string;
  readonly signal: AbortSignal;
  timeoutMs(): number | undefined;
  requestHeader(name: string): string | null;
  setResponseHeader(name: string, value: string): void;
}

export { REQUEST_ID_HEADER };

/**
 * Authentication and authorization, run by the pipeline before each
 * handler. It receives calls as {@link IncomingCall}, so it works the same
 * for every server library.
 *
 * NOTE: the server library decodes the request message before the pipeline
 * runs, so a caller without credentials can still make the service parse up
 * to MAX_REQUEST_BYTES per call.
 */
export interface CallAccessControl {
  /**
   * Identifies the caller from the request headers.
   *
   * @returns the caller's name for the log, or undefined for an anonymous call.
   * @throws UnauthenticatedError when the call must carry credentials and does not.
   */
  authenticate(procedure: string, call: IncomingCall): string | undefined;
  /**
   * Checks that the caller may call the procedure.
   *
   * @throws PermissionDeniedError when it may not.
   */
  authorize(procedure: string, caller: string | undefined): void;
}

/** Optional collaborators of the pipeline besides the logger. */
export interface CallPipelineOptions {
  /** Counts each call by procedure and code, and records its duration. */
  metrics?: ServiceMetrics;
  /** Rejects new calls once shutdown has begun, and counts calls in progress. */
  lifecycle?: ServiceLifecycle;
  /** Authenticates and authorizes each call; every call is allowed when unset. */
  access?: CallAccessControl;
}

/**
 * Runs every RPC the same way, whichever server received it. It assigns the
 * request id, rejects the call while the service shuts down, authenticates
 * and authorizes the caller when access control is given, calls the handler
 * and converts its error. Then it logs one line with the procedure, caller
 * name, code and duration, and counts the call in the metrics.
 */
export class CallPipeline {
  constructor(
    private readonly logger: Logger,
    private readonly options: CallPipelineOptions = {},
  ) {}

  async runUnary<Request, Response>(
    procedure: string,
    request: Request,
    call: IncomingCall,
    handler: UnaryHandler<Request, Response>,
  ): Promise<Response> {
    const started = performance.now();
    const requestId = resolveRequestId(call.requestHeader(REQUEST_ID_HEADER));
    call.setResponseHeader(REQUEST_ID_HEADER, requestId);
    // Handlers log through this child, and code deeper in a send puts the
    // request id in its own lines (SendDeadline.requestId).
    let log = this.logger.child({ requestId, procedure, server: call.server });

    const callEnded = this.options.lifecycle?.callStarted();
    let context: CallContext | undefined;
    try {
      if (this.options.lifecycle?.shuttingDown === true) {
        throw new ConnectError("the service is shutting down; retry on another instance", Code.Unavailable);
      }

      const access = this.options.access;
      const caller = access?.authenticate(procedure, call);
      if (caller !== undefined) {
        log = log.child({ caller });
      }
      access?.authorize(procedure, caller);

      context = {
        procedure,
        signal: call.signal,
        timeoutMs: () => call.timeoutMs(),
        requestHeader: (name) => call.requestHeader(name),
        requestId,
        log,
        logFields: undefined,
      };
      const response = await handler(request, context);
      const code = endedCode(call, started);
      this.finished(procedure, code, started);
      log.info(withFields({ code, durationMs: elapsedMs(started) }, context.logFields), "rpc finished");
      return response;
    } catch (thrown) {
      const error = toConnectError(thrown);
      this.finished(procedure, codeName(error.code), started);
      logFailure(log, error, elapsedMs(started), context?.logFields);
      throw error;
    } finally {
      callEnded?.();
    }
  }

  private finished(procedure: string, code: string, started: number): void {
    this.options.metrics?.rpcFinished(procedure, code, (performance.now() - started) / 1000);
  }
}

function logFailure(log: Logger, error: ConnectError, durationMs: number, handlerFields: Record<string, unknown> | undefined): void {
  const cause = causeToLog(error);
  const fields = withFields(
    { code: codeName(error.code), durationMs, error: error.rawMessage, ...(cause === undefined ? {} : { err: cause }) },
    handlerFields,
  );
  log[failureLogLevel(error.code)](fields, "rpc failed");
}

/**
 * Returns the log level of a call or request that failed with `code`:
 * `error` for a fault of the service, `warn` for UNAVAILABLE and
 * DEADLINE_EXCEEDED, and `info` for the caller's mistakes.
 */
export function failureLogLevel(code: Code): "error" | "warn" | "info" {
  if (isServerFault(code)) {
    return "error";
  }
  if (code === Code.Unavailable || code === Code.DeadlineExceeded) {
    return "warn";
  }
  return "info";
}

/** Returns the pipeline's fields of a log line with the handler's after them; the pipeline's win a clash. */
function withFields(fields: Record<string, unknown>, handlerFields: Record<string, unknown> | undefined): Record<string, unknown> {
  return handlerFields === undefined ? fields : Object.assign({}, handlerFields, fields);
}

/**
 * Returns the code to log and count for a handler that returned: `OK`, or
 * `CANCELLED` or `DEADLINE_EXCEEDED` when the caller went away first. A batch
 * returns its results even then, but no caller reads them. An abort at the
 * end of the shutdown grace period leaves `OK`, because the response is
 * still written before the connections close.
 */
function endedCode(call: IncomingCall, started: number): string {
  const { signal } = call;
  if (!signal.aborted) {
    return "OK";
  }
  const reason: unknown = signal.reason;
  if (reason instanceof GraceEndedError || (reason instanceof ConnectError && reason.cause instanceof GraceEndedError)) {
    return "OK";
  }
  if (reason instanceof ConnectError && reason.code === Code.DeadlineExceeded) {
    return "DEADLINE_EXCEEDED";
  }
  // A client closes the call at its own deadline, a moment before the server's timer would.
  const remainingMs = call.timeoutMs();
  if (remainingMs !== undefined && remainingMs <= deadlineSlackMs(remainingMs + (performance.now() - started))) {
    return "DEADLINE_EXCEEDED";
  }
  return "CANCELLED";
}

/** Returns the gRPC name of a code, for example `INVALID_ARGUMENT`. */
export function codeName(code: Code): string {
  // Connect spells the code Canceled; gRPC's canonical name is CANCELLED.
  if (code === Code.Canceled) {
    return "CANCELLED";
  }
  return (Code[code] ?? "UNKNOWN").replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
}

function elapsedMs(started: number): number {
  return Math.round((performance.now() - started) * 100) / 100;
}
