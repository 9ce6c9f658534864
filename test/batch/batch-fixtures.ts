import type { DescMessage, MessageInitShape, MessageShape } from "@bufbuild/protobuf";
import { anyIs, anyUnpack } from "@bufbuild/protobuf/wkt";
import { expect } from "vitest";

import { BadRequestSchema, ErrorInfoSchema } from "../../gen/smsgateway/v1/errors_pb.js";
import type {
  BatchResult,
  PassthroughSchema,
  MessageError,
  SendSmsBatchResponse,
  SendSmsResponse,
} from "../../gen/smsgateway/v1/sms_service_pb.js";
import type { RecordedRequest, ScriptedReply } from "../helpers/scripted-gateway.js";

/** One message of a batch request, as a test writes it. */
export interface BatchMessageInit {
  to: string;
  content: string;
  sender?: string;
  passthrough?: MessageInitShape<typeof PassthroughSchema>;
  idempotencyKey?: string;
}

/** Returns `count` valid messages to distinct recipients, `+1555000000`, `+1555000001`, ... */
export function messages(count: number, overrides: Partial<BatchMessageInit> = {}): BatchMessageInit[] {
  return Array.from({ length: count }, (_, index) => ({
    to: `+1555${String(index).padStart(6, "0")}`,
    content: `message ${index}`,
    ...overrides,
  }));
}

/** Returns the gRPC code name of each result, `OK` for a sent message. */
export function codesOf(response: SendSmsBatchResponse): string[] {
  return response.results.map((result) => (result.outcome.case === "response" ? "OK" : (result.outcome.value?.codeName ?? "")));
}

/** Returns the response of a result that must have succeeded. */
export function sentOf(result: BatchResult | undefined): SendSmsResponse {
  expect(result?.outcome.case).toBe("response");
  return result!.outcome.value as SendSmsResponse;
}

/** Returns the error of a result that must have failed. */
export function errorOf(result: BatchResult | undefined): MessageError {
  expect(result?.outcome.case).toBe("error");
  return result!.outcome.value as MessageError;
}

/** Returns the details of a message error that have the given type. */
export function detailsOf<Desc extends DescMessage>(error: MessageError, schema: Desc): MessageShape<Desc>[] {
  return error.details.filter((detail) => anyIs(detail, schema)).map((detail) => anyUnpack(detail, schema)!);
}

/** Returns the fields that a message error's BadRequest detail names. */
export function violatedFields(error: MessageError): string[] {
  return detailsOf(error, BadRequestSchema).flatMap((detail) => detail.fieldViolations.map((violation) => violation.field));
}

/** Returns the reason of a message error's ErrorInfo detail, empty when it has none. */
export function reasonOf(error: MessageError): string {
  return detailsOf(error, ErrorInfoSchema)[0]?.reason ?? "";
}

/** Returns the recipient in the JSON body of a recorded gateway request. */
export function recipientOf(request: RecordedRequest): string {
  return (JSON.parse(request.body) as { to: string }).to;
}

/** Builds a gateway reply that accepts the SMS with an id derived from its recipient, `id-<to>`. */
export function acceptedByRecipient(request: RecordedRequest): ScriptedReply {
  return { json: { data: { id: `id-${recipientOf(request)}`, date: "2026-01-02T03:04:05Z" } } };
}

/** Counts a gateway's requests in flight, and the most that were in flight at once. */
export class InFlightCounter {
  current = 0;
  max = 0;

  /** Marks a request as started; call the returned function when it ends. */
  enter(): () => void {
    this.current += 1;
    this.max = Math.max(this.max, this.current);
    return () => {
      this.current -= 1;
    };
  }
}
