import { create } from "@bufbuild/protobuf";
import type { Logger } from "pino";

import {
  BatchResultSchema,
  SendSmsBatchResponseSchema,
  type BatchResult,
  type SendSmsBatchResponse,
  type SendSmsResponse,
} from "../../gen/smsgateway/v1/sms_service_pb.js";
import type { MessageOutcome } from "../batch/batch-runner.js";
import { codeName } from "../rpc/call-pipeline.js";
import { causeToLog, isServerFault, toConnectError } from "../rpc/error-mapping.js";
import { toMessageError } from "../rpc/message-error.js";

/**
 * Builds the response of a batch from the outcome of each message, in
 * order, and logs one summary line with the failures counted by code.
 * Only the first bug of the service and the first storage failure are
 * logged with their cause. A bug or a lost database that every message hits
 * then writes one line.
 *
 * NOTE: each error result keeps the full details of a `SendSms` error, up
 * to about 1.3 KB, so a batch of 10,000 failures can exceed the 4 MiB that
 * grpc-js clients read by default.
 */
export function batchResponse(
  outcomes: readonly MessageOutcome<SendSmsResponse>[],
  integrationId: string,
  log: Logger,
): SendSmsBatchResponse {
  const failuresByCode: Record<string, number> = {};
  let succeeded = 0;
  let internalLogged = false;
  let storageLogged = false;

  const results = outcomes.map((outcome, index): BatchResult => {
    if (outcome.ok) {
      succeeded += 1;
      return create(BatchResultSchema, { outcome: { case: "response", value: outcome.value } });
    }

    const error = toConnectError(outcome.error);
    const name = codeName(error.code);
    failuresByCode[name] = (failuresByCode[name] ?? 0) + 1;
    const cause = causeToLog(error);
    if (isServerFault(error.code) && !internalLogged) {
      internalLogged = true;
      log.error({ integrationId, index, err: cause }, "batch message failed with an internal error");
    } else if (cause !== undefined && !isServerFault(error.code) && !storageLogged) {
      storageLogged = true;
      log.warn({ integrationId, index, code: name, err: cause }, "batch message failed because storage failed");
    }
    return create(BatchResultSchema, { outcome: { case: "error", value: toMessageError(error) } });
  });

  const failed = outcomes.length - succeeded;
  log.info({ integrationId, messages: outcomes.length, succeeded, failed, failuresByCode }, "batch finished");
  return create(SendSmsBatchResponseSchema, { results, succeededCount: succeeded, failedCount: failed });
}
