/**
 * Errors the service expects and reports to callers. Each carries what the
 * caller needs to act; `src/rpc/error-mapping.ts` turns them into RPC codes
 * and details in one place. Any other error is a bug and reaches callers as
 * INTERNAL with no detail.
 */

/** One invalid request field and how to fix it. */
export interface FieldViolation {
  /** Path in the request, in snake_case, for example `integration.base_url`. */
  field: string;
  description: string;
}

export class InvalidArgumentError extends Error {
  override readonly name = "InvalidArgumentError";

  constructor(readonly violations: FieldViolation[]) {
    super(violations.map((v) => `${v.field}: ${v.description}`).join("; "));
  }

  /** Creates the error for one field. */
  static field(field: string, description: string): InvalidArgumentError {
    return new InvalidArgumentError([{ field, description }]);
  }
}

export class NotFoundError extends Error {
  override readonly name = "NotFoundError";

  constructor(
    readonly resource: string,
    readonly id: string,
  ) {
    super(`${resource} "${id}" not found`);
  }
}

export class AlreadyExistsError extends Error {
  override readonly name = "AlreadyExistsError";

  constructor(
    readonly resource: string,
    readonly id: string,
  ) {
    super(`${resource} "${id}" already exists`);
  }
}

/**
 * Kind of gateway failure, which decides the RPC code:
 * `credentials_refused`, `rejected`, `redirected` and `invalid_auth_reply`
 * are FAILED_PRECONDITION (fix the integration or the request, do not
 * retry as is), `rate_limited` RESOURCE_EXHAUSTED, `unavailable`
 * UNAVAILABLE, `timeout` DEADLINE_EXCEEDED, `canceled` CANCELLED.
 */
export type GatewayFailure =
  | "credentials_refused"
  | "rejected"
  | "redirected"
  | "invalid_auth_reply"
  | "rate_limited"
  | "unavailable"
  | "timeout"
  | "canceled";

/** The request to the gateway that failed. */
export type GatewayStage = "auth" | "send";

export interface GatewayErrorInfo {
  failure: GatewayFailure;
  stage: GatewayStage;
  /** HTTP status of the reply, 0 when there was none. */
  httpStatus: number;
  /** Start of the reply body as text, secrets already redacted. */
  bodyExcerpt: string;
  bodyTruncated: boolean;
  /** Requests sent for this stage. */
  attempts: number;
  /** Seconds the gateway asked to wait (`Retry-After`), when it did. */
  retryAfterSeconds?: number;
}

export class GatewayError extends Error {
  override readonly name = "GatewayError";

  constructor(
    message: string,
    readonly info: GatewayErrorInfo,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** Flow control that rejected a send, as the stable `ErrorInfo.reason` callers see. */
export type FlowLimitReason = "CONCURRENCY_LIMIT" | "RATE_LIMITED" | "CIRCUIT_OPEN";

export interface FlowLimitInfo {
  reason: FlowLimitReason;
  integrationId: string;
  /** The limit that applied: sends in flight, sends per second, or consecutive failures that open the circuit. */
  limit: string;
  /** Time to wait before trying again, in milliseconds, at least 1. */
  retryDelayMs: number;
  /** More facts for `ErrorInfo.metadata`, with snake_case keys. */
  metadata?: Record<string, string>;
}

/**
 * A send that flow control rejected before any request reached the gateway.
 * CONCURRENCY_LIMIT and RATE_LIMITED become RESOURCE_EXHAUSTED, CIRCUIT_OPEN
 * UNAVAILABLE, each with the retry delay.
 */
export class FlowLimitError extends Error {
  override readonly name = "FlowLimitError";

  constructor(
    message: string,
    readonly info: FlowLimitInfo,
  ) {
    super(message);
  }
}
