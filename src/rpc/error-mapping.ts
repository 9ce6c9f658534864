import { create } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  BadRequestSchema,
  ErrorInfoSchema,
  GatewayErrorSchema,
  RetryInfoSchema,
  GatewayStage as GatewayStageProto,
} from "../../gen/smsgateway/v1/errors_pb.js";
import {
  AlreadyExistsError,
  FlowLimitError,
  GatewayError,
  IdempotencyError,
  IntegrationSettingError,
  InvalidArgumentError,
  MessageNotStartedError,
  NotFoundError,
  OutboundBlockedError,
  PermissionDeniedError,
  SecretUnreadableError,
  UnauthenticatedError,
  VersionConflictError,
  type GatewayFailure,
  type IdempotencyConflict,
  type NotStartedReason,
} from "../errors.js";
import { retryAfterSeconds } from "../flow/retry-delay.js";
import { StorageError } from "../store/storage-error.js";

const GATEWAY_CODES: Record<GatewayFailure, Code> = {
  credentials_refused: Code.FailedPrecondition,
  rejected: Code.FailedPrecondition,
  redirected: Code.FailedPrecondition,
  invalid_auth_reply: Code.FailedPrecondition,
  rate_limited: Code.ResourceExhausted,
  unavailable: Code.Unavailable,
  timeout: Code.DeadlineExceeded,
  canceled: Code.Canceled,
};

/** RPC code of each reason a batch message was not started. */
const NOT_STARTED_CODES: Record<NotStartedReason, Code> = {
  canceled: Code.Canceled,
  deadline_exceeded: Code.DeadlineExceeded,
  shutting_down: Code.Unavailable,
  gateway_rate_limited: Code.ResourceExhausted,
};

/** RPC code and `ErrorInfo` reason of each idempotency conflict. */
const IDEMPOTENCY_CODES: Record<IdempotencyConflict, { code: Code; reason: string }> = {
  key_reused: { code: Code.FailedPrecondition, reason: "IDEMPOTENCY_KEY_REUSED" },
  in_progress: { code: Code.Aborted, reason: "IDEMPOTENCY_KEY_IN_PROGRESS" },
  outcome_unknown: { code: Code.Aborted, reason: "IDEMPOTENCY_OUTCOME_UNKNOWN" },
};

/** Message of every storage failure that is not a bug; it leaves out the driver's words, which may quote SQL or stored values. */
const STORAGE_UNAVAILABLE_MESSAGE = "the service's storage is unavailable; retry later";

/** Message of a storage failure whose database reported damaged data: no retry helps. */
const STORAGE_CORRUPTED_MESSAGE = "the service's database is damaged and must be restored from a backup; the service log has the details";

/**
 * Converts any error thrown by a handler into the ConnectError that reaches
 * the caller, with the RPC code and typed details. A storage failure becomes
 * UNAVAILABLE, unless the database refused the statement itself. Errors the
 * service does not expect become INTERNAL with a generic message, the
 * original kept as `cause` for the log only.
 */
export function toConnectError(error: unknown): ConnectError {
  if (error instanceof ConnectError) {
    return error;
  }

  if (error instanceof InvalidArgumentError) {
    const detail = { desc: BadRequestSchema, value: create(BadRequestSchema, { fieldViolations: error.violations }) };
    return new ConnectError(error.message, Code.InvalidArgument, undefined, [detail], error);
  }

  if (error instanceof NotFoundError) {
    return new ConnectError(error.message, Code.NotFound, undefined, undefined, error);
  }

  if (error instanceof VersionConflictError) {
    return new ConnectError(error.message, Code.Aborted, undefined, undefined, error);
  }

  if (error instanceof AlreadyExistsError) {
    return new ConnectError(error.message, Code.AlreadyExists, undefined, undefined, error);
  }

  if (error instanceof GatewayError) {
    const { info } = error;
    const detail = {
      desc: GatewayErrorSchema,
      value: create(GatewayErrorSchema, {
        stage: info.stage === "auth" ? GatewayStageProto.AUTH : GatewayStageProto.SEND,
        httpStatus: info.httpStatus,
        bodyExcerpt: info.bodyExcerpt,
        bodyTruncated: info.bodyTruncated,
        attempts: info.attempts,
        outcomeUnknown: info.outcomeUnknown === true,
      }),
    };
    if (info.retryAfterSeconds === undefined) {
      return new ConnectError(error.message, GATEWAY_CODES[info.failure], undefined, [detail], error);
    }
    // The header serves callers that read headers; RetryInfo also reaches the per-message results of a batch.
    const metadata = { "retry-after": String(info.retryAfterSeconds) };
    return new ConnectError(error.message, GATEWAY_CODES[info.failure], metadata, [detail, retryInfo(info.retryAfterSeconds * 1000)], error);
  }

  if (error instanceof OutboundBlockedError) {
    const metadata = { field: error.field, ...error.metadata };
    const info = { desc: ErrorInfoSchema, value: create(ErrorInfoSchema, { reason: error.reason, metadata }) };
    if (error.malformed) {
      const violations = [{ field: error.field, description: error.problem }];
      const badRequest = { desc: BadRequestSchema, value: create(BadRequestSchema, { fieldViolations: violations }) };
      return new ConnectError(error.message, Code.InvalidArgument, undefined, [badRequest, info], error);
    }
    return new ConnectError(error.message, Code.PermissionDenied, undefined, [info], error);
  }

  if (error instanceof FlowLimitError) {
    return flowLimitConnectError(error);
  }

  if (error instanceof UnauthenticatedError) {
    // RFC 6750 (section 3) has the server send this challenge when a bearer token is missing or invalid.
    return new ConnectError(error.message, Code.Unauthenticated, { "www-authenticate": "Bearer" }, undefined, error);
  }

  if (error instanceof PermissionDeniedError) {
    return new ConnectError(error.message, Code.PermissionDenied, undefined, undefined, error);
  }

  if (error instanceof SecretUnreadableError || error instanceof IntegrationSettingError) {
    return new ConnectError(error.message, Code.FailedPrecondition, undefined, undefined, error);
  }

  if (error instanceof IdempotencyError) {
    const { code, reason } = IDEMPOTENCY_CODES[error.conflict];
    const detail = {
      desc: ErrorInfoSchema,
      value: create(ErrorInfoSchema, { reason, metadata: { field: error.field } }),
    };
    return new ConnectError(error.message, code, undefined, [detail], error);
  }

  if (error instanceof MessageNotStartedError) {
    const code = NOT_STARTED_CODES[error.reason];
    const detail = { desc: ErrorInfoSchema, value: create(ErrorInfoSchema, { reason: "MESSAGE_NOT_STARTED" }) };
    const details = error.retryDelayMs === undefined ? [detail] : [detail, retryInfo(error.retryDelayMs)];
    return new ConnectError(error.message, code, undefined, details, error);
  }

  if (error instanceof StorageError && error.dataCorrupted) {
    return new ConnectError(STORAGE_CORRUPTED_MESSAGE, Code.DataLoss, undefined, undefined, error);
  }

  if (error instanceof StorageError && !error.statementRejected) {
    return new ConnectError(STORAGE_UNAVAILABLE_MESSAGE, Code.Unavailable, undefined, undefined, error);
  }

  return new ConnectError("internal error; the service log has the details", Code.Internal, undefined, undefined, error);
}

/**
 * Converts a flow-control rejection: RESOURCE_EXHAUSTED, or UNAVAILABLE for
 * an open circuit, with `ErrorInfo` and `RetryInfo` details and the delay
 * in whole seconds, rounded up, in a `retry-after` header.
 */
function flowLimitConnectError(error: FlowLimitError): ConnectError {
  const { info } = error;
  const metadata = { integration_id: info.integrationId, limit: info.limit, ...info.metadata };
  const details = [
    { desc: ErrorInfoSchema, value: create(ErrorInfoSchema, { reason: info.reason, metadata }) },
    retryInfo(info.retryDelayMs),
  ];
  const code = info.reason === "CIRCUIT_OPEN" ? Code.Unavailable : Code.ResourceExhausted;
  const headers = { "retry-after": String(retryAfterSeconds(info.retryDelayMs)) };
  return new ConnectError(error.message, code, headers, details, error);
}

/** Returns a `RetryInfo` detail with the time after which a retry makes sense. */
function retryInfo(delayMs: number) {
  return { desc: RetryInfoSchema, value: create(RetryInfoSchema, { retryDelay: durationFromMs(delayMs) }) };
}

/**
 * Returns the error to log in full with a failed call, or undefined when
 * its code and message are enough: the cause of a server fault, and the
 * StorageError behind a storage failure, whose driver code and message
 * the caller does not get.
 */
export function causeToLog(error: ConnectError): unknown {
  if (isServerFault(error.code)) {
    return error.cause ?? error;
  }
  return error.cause instanceof StorageError ? error.cause : undefined;
}

/**
 * Returns whether a code means that the service itself failed, which is
 * logged at error level. UNIMPLEMENTED is not one: it reaches the pipeline
 * only for a request that requests what the service does not offer, such as
 * an unknown `content-encoding`.
 */
export function isServerFault(code: Code): boolean {
  return code === Code.Internal || code === Code.Unknown || code === Code.DataLoss;
}
