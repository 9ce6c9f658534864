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
  /**
   * True when an SMS request was written to the gateway but no reply status
   * arrived (a timeout, reset or cancel after the write), so the gateway may
   * have sent the SMS.
   */
  outcomeUnknown?: boolean;
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

/**
 * Why a send with an idempotency key did not go ahead:
 * `key_reused` (FAILED_PRECONDITION) the key belongs to a different request;
 * `in_progress` (ABORTED) another send with the key was still running when
 * this call's deadline came; `outcome_unknown` (ABORTED) the send that held
 * the key stopped without recording an outcome, so the gateway may or may
 * not have the SMS.
 */
export type IdempotencyConflict = "key_reused" | "in_progress" | "outcome_unknown";

export class IdempotencyError extends Error {
  override readonly name = "IdempotencyError";

  constructor(
    readonly conflict: IdempotencyConflict,
    message: string,
  ) {
    super(message);
  }
}
