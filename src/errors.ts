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

  /** @param hint what the caller can do about the violations as a whole, added to the message after a period. */
  constructor(
    readonly violations: FieldViolation[],
    hint?: string,
  ) {
    const list = violations.map((v) => `${v.field}: ${v.description}`).join("; ");
    super(hint === undefined ? list : `${list}. ${hint}`);
  }

  /** Creates the error for one field. */
  static field(field: string, description: string): InvalidArgumentError {
    return new InvalidArgumentError([{ field, description }]);
  }
}

export class NotFoundError extends Error {
  override readonly name = "NotFoundError";

  /** @param hint what the caller can do instead, added to the message after a semicolon. */
  constructor(
    readonly resource: string,
    readonly id: string,
    hint?: string,
  ) {
    super(`${resource} "${id}" not found${hint === undefined ? "" : `; ${hint}`}`);
  }
}

/** Error of an update that expected one version of an integration and found another, because a concurrent write came first. */
export class VersionConflictError extends Error {
  override readonly name = "VersionConflictError";

  constructor(
    readonly resource: string,
    readonly id: string,
  ) {
    super(`${resource} "${id}" was changed by another request while this one updated it; read it again and retry`);
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
  /** True for the stored failure of an idempotency key, thrown again without a request. */
  readonly replayed: boolean;

  constructor(
    message: string,
    readonly info: GatewayErrorInfo,
    options?: { cause?: unknown; replayed?: boolean },
  ) {
    super(message, options);
    this.replayed = options?.replayed === true;
  }
}

/**
 * Stable reason codes of `OutboundBlockedError`, sent in the
 * `smsgateway.v1.ErrorInfo` detail and listed in the README.
 */
export type OutboundBlockReason =
  | "OUTBOUND_URL_INVALID"
  | "OUTBOUND_SCHEME_BLOCKED"
  | "OUTBOUND_USERINFO_BLOCKED"
  | "OUTBOUND_HOST_BLOCKED"
  | "OUTBOUND_ADDRESS_BLOCKED";

/** Reasons that no setting can lift, because the URL itself is unusable. */
const MALFORMED_URL_REASONS: ReadonlySet<OutboundBlockReason> = new Set([
  "OUTBOUND_URL_INVALID",
  "OUTBOUND_SCHEME_BLOCKED",
  "OUTBOUND_USERINFO_BLOCKED",
]);

/**
 * The SSRF guard refused a gateway URL (`base_url` or `auth_url`), when the
 * integration was saved or before a request was sent. Nothing was sent.
 *
 * A malformed URL is INVALID_ARGUMENT; a host or address that the guard's
 * rules block, which `OUTBOUND_ALLOW` could allow, is PERMISSION_DENIED.
 */
export class OutboundBlockedError extends Error {
  override readonly name = "OutboundBlockedError";

  constructor(
    /** Request path of the URL, such as `integration.base_url`; empty when not yet known. */
    readonly field: string,
    readonly reason: OutboundBlockReason,
    /** Description of the problem and its fix, without the field name. */
    readonly problem: string,
    /** Facts for the `ErrorInfo` detail, such as `host`, `address` and `range`. */
    readonly metadata: Readonly<Record<string, string>>,
  ) {
    super(field === "" ? problem : `${field}: ${problem}`);
  }

  /** True when the URL is unusable whatever the settings. */
  get malformed(): boolean {
    return MALFORMED_URL_REASONS.has(this.reason);
  }

  /** Returns the same error naming `field`. */
  withField(field: string): OutboundBlockedError {
    return new OutboundBlockedError(field, this.reason, this.problem, this.metadata);
  }

  /** Returns the same error with `redact` applied to its problem and its metadata values, which quote the URL. */
  redacted(redact: (text: string) => string): OutboundBlockedError {
    const metadata = Object.fromEntries(Object.entries(this.metadata).map(([key, value]) => [key, redact(value)]));
    return new OutboundBlockedError(this.field, this.reason, redact(this.problem), metadata);
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

/** The caller sent no API key, a malformed `authorization` header, or a key the service does not know. */
export class UnauthenticatedError extends Error {
  override readonly name = "UnauthenticatedError";
}

/** The caller's API key is valid but lacks the scope the procedure needs. */
export class PermissionDeniedError extends Error {
  override readonly name = "PermissionDeniedError";

  constructor(
    message: string,
    /** Name of the caller's API key. */
    readonly caller: string,
  ) {
    super(message);
  }
}

/**
 * A stored gateway secret that the configured encryption keys cannot
 * decrypt. The integration cannot send until an operator configures the
 * key or sets the secret again.
 */
export class SecretUnreadableError extends Error {
  override readonly name = "SecretUnreadableError";

  constructor(
    message: string,
    readonly integrationId: string,
    /** Stored column, `api_key` or `secret_key`. */
    readonly field: string,
    /** Key id written in the ciphertext, empty when the value is malformed. */
    readonly keyId: string,
  ) {
    super(message);
  }
}

/**
 * A stored integration setting that the current checks reject, which stops
 * a send before any request. The integration was saved while the setting was
 * still accepted, and setting the field again with `ConfigureIntegration`
 * fixes it.
 */
export class IntegrationSettingError extends Error {
  override readonly name = "IntegrationSettingError";

  constructor(
    message: string,
    readonly integrationId: string,
    /** The integration field to change, such as `api_key_header`. */
    readonly field: string,
  ) {
    super(message);
  }
}

/**
 * Why a send with an idempotency key did not go ahead:
 * `key_reused` (FAILED_PRECONDITION) the key belongs to a different request;
 * `in_progress` (ABORTED) another send with the key was still running when
 * this call's deadline came; `outcome_unknown` (ABORTED) the send that held
 * the key recorded no outcome, because its process ended or the store
 * failed, so the gateway may or may not have the SMS.
 */
export type IdempotencyConflict = "key_reused" | "in_progress" | "outcome_unknown";

/**
 * Error of a send whose idempotency key could not be used. Its message is
 * the key's request path, a colon and the problem, as for invalid fields.
 */
export class IdempotencyError extends Error {
  override readonly name = "IdempotencyError";

  constructor(
    readonly conflict: IdempotencyConflict,
    /** Description of the problem and its fix, without the field name. */
    readonly problem: string,
    /** Request path of the key: `idempotency_key` in `SendSms`, `messages[3].idempotency_key` in a batch. */
    readonly field = "idempotency_key",
  ) {
    super(`${field}: ${problem}`);
  }

  /** Returns the same error naming `field`. */
  withField(field: string): IdempotencyError {
    return new IdempotencyError(this.conflict, this.problem, field);
  }
}

/**
 * Base of the errors that stop a send right before its first SMS request,
 * so the gateway received nothing. A duplicate that waited for that send's
 * idempotency key claims the key and sends, instead of reporting the
 * outcome as unknown.
 */
export abstract class StoppedBeforeRequestError extends Error {}

/**
 * Abort reason of every call still in progress when the shutdown grace
 * period ends. A send that it cuts short fails as `canceled`, like one the
 * caller canceled, with a message that names the shutdown instead.
 */
export class GraceEndedError extends Error {
  override readonly name = "GraceEndedError";

  constructor() {
    super("the shutdown grace period ended");
  }
}

/**
 * Reason a message of a batch was never started. With `canceled`
 * (CANCELLED), the caller canceled the call. With `deadline_exceeded`
 * (DEADLINE_EXCEEDED), too little of the caller's deadline was left. With
 * `shutting_down` (UNAVAILABLE), the service began to shut down. With
 * `gateway_rate_limited` (RESOURCE_EXHAUSTED), the gateway replied to
 * another message of the batch with 429 and requested a wait that the batch
 * could not make.
 */
export type NotStartedReason = "canceled" | "deadline_exceeded" | "shutting_down" | "gateway_rate_limited";

/**
 * A message of a `SendSmsBatch` call that the service did not start, so
 * nothing of it reached the gateway and sending it again is safe.
 */
export class MessageNotStartedError extends Error {
  override readonly name = "MessageNotStartedError";

  constructor(
    readonly reason: NotStartedReason,
    message: string,
    /** Time after which sending the message again makes sense, set for `gateway_rate_limited`. */
    readonly retryDelayMs?: number,
  ) {
    super(message);
  }
}
