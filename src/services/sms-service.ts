import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  DateSource,
  SendSmsResponseSchema,
  type SendSmsRequest,
  type SendSmsResponse,
} from "../../gen/smsgateway/v1/sms_service_pb.js";
import type { Delivery } from "../delivery/delivery.js";
import { InvalidArgumentError, type FieldViolation } from "../errors.js";
import type { SendGate } from "../flow/send-gate.js";
import type { CallContext } from "../rpc/call-context.js";
import { assertSecretsReadable } from "../security/unreadable-secrets.js";
import type { IntegrationService } from "./integration-service.js";
import { contentProblem, recipientProblem, senderOverrideProblem } from "./message-fields.js";

const MAX_IDEMPOTENCY_KEY_LENGTH = 128;
/** Printable ASCII: the characters an HTTP header carries unchanged. */
const IDEMPOTENCY_KEY_PATTERN = /^[\x20-\x7e]*$/;

/** Implements `smsgateway.v1.SmsService`. */
export class SmsService {
  constructor(
    private readonly integrations: IntegrationService,
    private readonly delivery: Delivery,
    private readonly gate: SendGate,
  ) {}

  async sendSms(request: SendSmsRequest, context: CallContext): Promise<SendSmsResponse> {
    validateSendRequest(request);

    const integration = await this.integrations.load(request.integrationId, "integration_id");
    const message = {
      to: request.to,
      content: request.content,
      sender: request.sender,
      passthrough: request.passthrough,
      idempotencyKey: request.idempotencyKey,
    };
    const deadlineMs = context.timeoutMs();
    // NOTE: the passthrough fields are validated after the gate admitted the
    // send, so an invalid passthrough, like a replayed idempotent send, still
    // takes a rate token.
    assertSecretsReadable(integration, context.log);
    const result = await this.gate.run(integration, { deadlineMs }, () =>
      this.delivery.send(integration, message, { signal: context.signal, deadlineMs }),
    );

    return create(SendSmsResponseSchema, {
      id: result.id,
      date: timestampFromDate(result.date),
      rawDate: result.rawDate,
      dateSource: result.dateSource === "gateway" ? DateSource.GATEWAY : DateSource.SEND_TIME,
      gatewayStatus: result.httpStatus,
      attempts: result.attempts,
      warnings: result.warnings,
      replayed: result.replayed,
    });
  }
}

function validateSendRequest(request: SendSmsRequest): void {
  const violations: FieldViolation[] = [];
  const add = (field: string, description: string | null) => {
    if (description !== null) {
      violations.push({ field, description });
    }
  };

  if (request.integrationId === "") {
    add("integration_id", "required: the id of the integration to send through");
  }
  add("to", recipientProblem(request.to));
  add("content", contentProblem(request.content));
  add("sender", senderOverrideProblem(request.sender));

  if (request.idempotencyKey.length > MAX_IDEMPOTENCY_KEY_LENGTH) {
    add("idempotency_key", `longer than ${MAX_IDEMPOTENCY_KEY_LENGTH} characters`);
  } else if (!IDEMPOTENCY_KEY_PATTERN.test(request.idempotencyKey)) {
    add("idempotency_key", "contains characters other than printable ASCII (space to ~); use for example a UUID");
  } else if (request.idempotencyKey !== "" && request.idempotencyKey.trim() !== request.idempotencyKey) {
    add("idempotency_key", "starts or ends with a space, which an HTTP header cannot carry; remove it");
  }

  if (violations.length > 0) {
    throw new InvalidArgumentError(violations);
  }
}
