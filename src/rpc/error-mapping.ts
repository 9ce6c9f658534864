import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  BadRequestSchema,
  ErrorInfoSchema,
  GatewayErrorSchema,
  GatewayStage as GatewayStageProto,
} from "../../gen/smsgateway/v1/errors_pb.js";
import {
  AlreadyExistsError,
  GatewayError,
  IdempotencyError,
  InvalidArgumentError,
  NotFoundError,
  type GatewayFailure,
  type IdempotencyConflict,
} from "../errors.js";

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

/** RPC code and `ErrorInfo` reason of each idempotency conflict. */
const IDEMPOTENCY_CODES: Record<IdempotencyConflict, { code: Code; reason: string }> = {
  key_reused: { code: Code.FailedPrecondition, reason: "IDEMPOTENCY_KEY_REUSED" },
  in_progress: { code: Code.Aborted, reason: "IDEMPOTENCY_KEY_IN_PROGRESS" },
  outcome_unknown: { code: Code.Aborted, reason: "IDEMPOTENCY_OUTCOME_UNKNOWN" },
};

/**
 * Converts any error thrown by a handler into the ConnectError that reaches
 * the caller, with the RPC code and typed details. Errors the service does
 * not expect become INTERNAL with a generic message, the original kept as
 * `cause` for the log only.
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
    const metadata = info.retryAfterSeconds === undefined ? undefined : { "retry-after": String(info.retryAfterSeconds) };
    return new ConnectError(error.message, GATEWAY_CODES[info.failure], metadata, [detail], error);
  }

  if (error instanceof IdempotencyError) {
    const { code, reason } = IDEMPOTENCY_CODES[error.conflict];
    const detail = {
      desc: ErrorInfoSchema,
      value: create(ErrorInfoSchema, { reason, metadata: { field: "idempotency_key" } }),
    };
    return new ConnectError(error.message, code, undefined, [detail], error);
  }

  return new ConnectError("internal error; the service log has the details", Code.Internal, undefined, undefined, error);
}

/** Codes that mean the service itself failed, logged at error level. */
export function isServerFault(code: Code): boolean {
  return code === Code.Internal || code === Code.Unknown || code === Code.DataLoss || code === Code.Unimplemented;
}
