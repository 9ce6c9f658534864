import type { FieldViolation } from "../errors.js";
import { contentProblem, recipientProblem, senderProblem } from "./message-fields.js";

const MAX_IDEMPOTENCY_KEY_LENGTH = 128;
/** Printable ASCII: the characters an HTTP header carries unchanged. */
const IDEMPOTENCY_KEY_PATTERN = /^[\x20-\x7e]*$/;

/** The fields of one SMS that a caller sets, in `SendSmsRequest` and in each message of a batch. */
export interface MessageFields {
  to: string;
  content: string;
  sender?: string;
  idempotencyKey: string;
}

/** Checks that the id of the integration to send through is set; `load` checks its form. */
export function integrationIdViolations(integrationId: string): FieldViolation[] {
  if (integrationId === "") {
    return [{ field: "integration_id", description: "required: the id of the integration to send through" }];
  }
  return [];
}

/** The sender that applies when a request sets none, as error messages name it. */
export const INTEGRATION_SENDER = "the integration's default_sender";

/**
 * Checks the fields of one SMS. `prefix` is the path of the message in the
 * request, such as `messages[3].`, or empty for `SendSmsRequest`.
 * `fallbackSender` names the sender used when the message sets none.
 */
export function messageViolations(message: MessageFields, prefix: string, fallbackSender = INTEGRATION_SENDER): FieldViolation[] {
  const violations: FieldViolation[] = [];
  const add = (field: string, description: string | null) => {
    if (description !== null) {
      violations.push({ field: prefix + field, description });
    }
  };

  add("to", recipientProblem(message.to));
  add("content", contentProblem(message.content));
  violations.push(...senderViolations(message.sender, `${prefix}sender`, fallbackSender));

  if (message.idempotencyKey.length > MAX_IDEMPOTENCY_KEY_LENGTH) {
    add("idempotency_key", `longer than ${MAX_IDEMPOTENCY_KEY_LENGTH} characters`);
  } else if (!IDEMPOTENCY_KEY_PATTERN.test(message.idempotencyKey)) {
    add("idempotency_key", "contains characters other than printable ASCII (space to ~); use for example a UUID");
  } else if (message.idempotencyKey !== "" && message.idempotencyKey.trim() !== message.idempotencyKey) {
    add("idempotency_key", "starts or ends with a space, which an HTTP header cannot carry; remove it");
  }

  return violations;
}

/** Checks an optional sender id, which must not be empty when set. */
export function senderViolations(sender: string | undefined, field: string, fallbackSender = INTEGRATION_SENDER): FieldViolation[] {
  const problem = senderProblem(sender, fallbackSender);
  return problem === null ? [] : [{ field, description: problem }];
}
