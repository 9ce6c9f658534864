import { create } from "@bufbuild/protobuf";
import { durationFromMs, timestampFromDate } from "@bufbuild/protobuf/wkt";

import { ErrorInfoSchema, GatewayStage, RetryInfoSchema } from "../../gen/smsgateway/v1/errors_pb.js";
import {
  TestSendFailureSchema,
  TestSendResultSchema,
  type TestSendResult,
} from "../../gen/smsgateway/v1/integration_service_pb.js";
import { DateSource } from "../../gen/smsgateway/v1/sms_service_pb.js";
import type { SendResult } from "../dispatch/dispatcher.js";
import { FlowLimitError, GatewayError, OutboundBlockedError } from "../errors.js";
import { codeName } from "../rpc/call-pipeline.js";
import { toConnectError } from "../rpc/error-mapping.js";

/** Builds the result of a test SMS that the gateway accepted. */
export function acceptedSendResult(result: SendResult): TestSendResult {
  return create(TestSendResultSchema, {
    accepted: true,
    id: result.id,
    date: timestampFromDate(result.date),
    rawDate: result.rawDate,
    dateSource: result.dateSource === "gateway" ? DateSource.GATEWAY : DateSource.SEND_TIME,
    warnings: result.warnings,
    gatewayStatus: result.httpStatus,
    attempts: result.attempts,
    replyExcerpt: result.replyExcerpt?.text ?? "",
    replyTruncated: result.replyExcerpt?.truncated ?? false,
  });
}

/**
 * Builds the result of a test SMS that failed the way a send can fail: the
 * gateway failed or refused it, the SSRF guard blocked a URL, or flow
 * control rejected it. Returns undefined for any other error, which is not
 * an outcome of the test and stays an error of the call.
 *
 * The code, message and details are those that `SendSms` would return, as
 * the one error mapping makes them.
 */
export function failedSendResult(error: unknown): TestSendResult | undefined {
  if (!(error instanceof GatewayError || error instanceof OutboundBlockedError || error instanceof FlowLimitError)) {
    return undefined;
  }
  const mapped = toConnectError(error);
  const gateway = error instanceof GatewayError ? error.info : undefined;
  const retryDelay =
    mapped.findDetails(RetryInfoSchema)[0]?.retryDelay ??
    (gateway?.retryAfterSeconds === undefined ? undefined : durationFromMs(gateway.retryAfterSeconds * 1000));

  let stage = GatewayStage.UNSPECIFIED;
  if (gateway !== undefined) {
    stage = gateway.stage === "auth" ? GatewayStage.AUTH : GatewayStage.SEND;
  }

  const failure = create(TestSendFailureSchema, {
    code: codeName(mapped.code),
    message: mapped.rawMessage,
    stage,
    errorInfo: mapped.findDetails(ErrorInfoSchema)[0],
    retryDelay,
  });
  return create(TestSendResultSchema, {
    accepted: false,
    gatewayStatus: gateway?.httpStatus ?? 0,
    attempts: gateway?.attempts ?? 0,
    replyExcerpt: gateway?.bodyExcerpt ?? "",
    replyTruncated: gateway?.bodyTruncated ?? false,
    failure,
  });
}
