import { randomUUID } from "node:crypto";
import { performance } from "node:perf_hooks";
import { Code, type ConnectError } from "@connectrpc/connect";
import type { Logger } from "pino";
import type { CallContext, UnaryHandler } from "./call-context.js";
import { isServerFault, toConnectError } from "./error-mapping.js";

/** Incoming call as a server library hands it to the pipeline. */
export interface IncomingCall {
  /** Server library that received the call, such as `connect-node` or `grpc-js`; logged with the call. */
  readonly server: string;
  readonly signal: AbortSignal;
  timeoutMs(): number | undefined;
  requestHeader(name: string): string | null;
  setResponseHeader(name: string, value: string): void;
}

export const REQUEST_ID_HEADER = "x-request-id";

/** A caller-supplied request id is kept when it is short printable ASCII. */
const REQUEST_ID_PATTERN = /^[\x21-\x7e]{1,128}$/;

/**
 * Runs every RPC the same way, whichever server received it: assigns the
 * request id, calls the handler, converts its error, and logs one line with
 * the procedure, code and duration.
 */
export class CallPipeline {
  constructor(private readonly logger: Logger) {}

  async runUnary<Request, Response>(
    procedure: string,
    request: Request,
    call: IncomingCall,
    handler: UnaryHandler<Request, Response>,
  ): Promise<Response> {
    const started = performance.now();
    const suppliedId = call.requestHeader(REQUEST_ID_HEADER);
    const requestId = suppliedId !== null && REQUEST_ID_PATTERN.test(suppliedId) ? suppliedId : randomUUID();
    call.setResponseHeader(REQUEST_ID_HEADER, requestId);

    const log = this.logger.child({ procedure, requestId, server: call.server });
    const context: CallContext = {
      procedure,
      signal: call.signal,
      timeoutMs: () => call.timeoutMs(),
      requestHeader: (name) => call.requestHeader(name),
      requestId,
      log,
    };

    try {
      const response = await handler(request, context);
      log.info({ code: "OK", durationMs: elapsedMs(started) }, "rpc finished");
      return response;
    } catch (thrown) {
      const error = toConnectError(thrown);
      logFailure(log, error, elapsedMs(started));
      throw error;
    }
  }
}

function logFailure(log: Logger, error: ConnectError, durationMs: number): void {
  const fields = { code: codeName(error.code), durationMs, error: error.rawMessage };
  if (isServerFault(error.code)) {
    log.error({ ...fields, err: error.cause ?? error }, "rpc failed");
  } else if (error.code === Code.Unavailable || error.code === Code.DeadlineExceeded) {
    log.warn(fields, "rpc failed");
  } else {
    log.info(fields, "rpc failed");
  }
}

/** Returns the gRPC name of a code, for example `INVALID_ARGUMENT`. */
export function codeName(code: Code): string {
  return (Code[code] ?? "UNKNOWN").replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
}

function elapsedMs(started: number): number {
  return Math.round((performance.now() - started) * 100) / 100;
}
