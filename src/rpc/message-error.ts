import { create } from "@bufbuild/protobuf";
import { anyPack, AnySchema, type Any } from "@bufbuild/protobuf/wkt";
import type { ConnectError } from "@connectrpc/connect";

import { MessageErrorSchema, type MessageError } from "../../gen/smsgateway/v1/sms_service_pb.js";
import { codeName } from "./call-pipeline.js";

/**
 * Converts the error that a `SendSms` call would end with into the
 * `MessageError` of a batch result: the same code, message and typed
 * details. Response headers, such as `retry-after`, have no place in a
 * result, so their facts travel in the details (`RetryInfo`).
 */
export function toMessageError(error: ConnectError): MessageError {
  return create(MessageErrorSchema, {
    code: error.code,
    codeName: codeName(error.code),
    message: error.rawMessage,
    details: error.details.map(detailAsAny),
  });
}

function detailAsAny(detail: ConnectError["details"][number]): Any {
  if ("desc" in detail) {
    return anyPack(detail.desc, create(detail.desc, detail.value));
  }
  return create(AnySchema, { typeUrl: `type.googleapis.com/${detail.type}`, value: detail.value });
}
