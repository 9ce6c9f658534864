import type { SendSmsBatchRequest } from "../../gen/smsgateway/v1/sms_service_pb.js";
import type { SmsMessage } from "../dispatch/sms-request.js";
import type { FieldViolation } from "../errors.js";
import { integrationIdViolations, INTEGRATION_SENDER, messageViolations, senderViolations } from "./send-validation.js";

/** The sender of a batch message that sets none, as error messages name it. */
const BATCH_SENDER = "the batch's sender, else the integration's default_sender";

/** One message of a batch with the batch's defaults applied. */
export interface BatchEntry {
  sms: SmsMessage;
  /** Invalid fields of the message, named by their path in the batch request; empty when it can be sent. */
  violations: FieldViolation[];
  /** Path of the passthrough that applies: `messages[3].` for the message's own, empty for the batch's. */
  passthroughPrefix: string;
  /** Prefix of the paths of the message's fields in the batch request, such as `messages[3].`. */
  fieldPrefix: string;
}

/**
 * Checks the fields that concern the whole batch: the integration id, the
 * number of messages and the batch's sender.
 */
export function batchViolations(request: SendSmsBatchRequest, maxMessages: number): FieldViolation[] {
  const violations = integrationIdViolations(request.integrationId);
  const count = request.messages.length;
  if (count === 0) {
    violations.push({ field: "messages", description: "required: at least one message to send" });
  } else if (count > maxMessages) {
    violations.push({
      field: "messages",
      description: `contains ${count} messages, more than BATCH_MAX_MESSAGES (${maxMessages}); split them into batches of at most ${maxMessages}`,
    });
  }
  violations.push(...senderViolations(request.sender, "sender", INTEGRATION_SENDER));
  return violations;
}

/**
 * Applies the batch's `sender` and `passthrough` to the messages that set
 * none, and checks each message, including that no two messages share an
 * idempotency key.
 */
export function batchEntries(request: SendSmsBatchRequest): BatchEntry[] {
  const firstWithKey = new Map<string, number>();
  return request.messages.map((message, index) => {
    const prefix = `messages[${index}].`;
    const violations = messageViolations(message, prefix, BATCH_SENDER);

    const key = message.idempotencyKey;
    const first = firstWithKey.get(key);
    if (key !== "" && first !== undefined) {
      violations.push({
        field: `${prefix}idempotency_key`,
        description: `is also the key of messages[${first}]; give every message its own key`,
      });
    } else if (key !== "") {
      firstWithKey.set(key, index);
    }

    const ownPassthrough = message.passthrough !== undefined;
    return {
      sms: {
        to: message.to,
        content: message.content,
        sender: message.sender ?? request.sender,
        passthrough: ownPassthrough ? message.passthrough : request.passthrough,
        idempotencyKey: key,
      },
      violations,
      passthroughPrefix: ownPassthrough ? prefix : "",
      fieldPrefix: prefix,
    };
  });
}
