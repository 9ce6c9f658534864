import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  DateSource,
  SendSmsResponseSchema,
  type SendSmsRequest,
  type SendSmsResponse,
} from "../../gen/smsgateway/v1/sms_service_pb.js";
import type { Dispatcher } from "../dispatch/dispatcher.js";
import { InvalidArgumentError, type FieldViolation } from "../errors.js";
import type { SendGate } from "../flow/send-gate.js";
import type { CallContext } from "../rpc/call-context.js";
import { assertSecretsReadable } from "../security/unreadable-secrets.js";
import type { IntegrationService } from "./integration-service.js";
import { contentProblem, recipientProblem, senderOverrideProblem } from "./message-fields.js";

/** Implements `smsgateway.v1.SmsService`. */
export class SmsService {
  constructor(
    private readonly integrations: IntegrationService,
    private readonly dispatcher: Dispatcher,
    private readonly gate: SendGate,
  ) {}

  async sendSms(request: SendSmsRequest, context: CallContext): Promise<SendSmsResponse> {
    validateSendRequest(request);

    const integration = await this.integrations.load(request.integrationId, "integration_id");
    const message = { to: request.to, content: request.content, sender: request.sender, passthrough: request.passthrough };
    const deadlineMs = context.timeoutMs();
    // NOTE: the dispatcher validates the passthrough fields after the gate
    // admitted the send, so an invalid passthrough still takes a rate token.
    assertSecretsReadable(integration, context.log);
    const result = await this.gate.run(integration, { deadlineMs }, () =>
      this.dispatcher.send(integration, message, { signal: context.signal, deadlineMs }),
    );

    return create(SendSmsResponseSchema, {
      id: result.id,
      date: timestampFromDate(result.date),
      rawDate: result.rawDate,
      dateSource: result.dateSource === "gateway" ? DateSource.GATEWAY : DateSource.SEND_TIME,
      gatewayStatus: result.httpStatus,
      attempts: result.attempts,
      warnings: result.warnings,
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

  if (violations.length > 0) {
    throw new InvalidArgumentError(violations);
  }
}
