import { create } from "@bufbuild/protobuf";

import {
  TestIntegrationResponseSchema,
  type TestIntegrationRequest,
  type TestIntegrationResponse,
  type TestSendResult,
} from "../../gen/smsgateway/v1/integration_service_pb.js";
import type { Dispatcher, SmsMessage } from "../dispatch/dispatcher.js";
import { maskPhone } from "../dispatch/mask.js";
import type { Integration } from "../domain/integration.js";
import { InvalidArgumentError, type FieldViolation } from "../errors.js";
import type { SendGate } from "../flow/send-gate.js";
import type { OutboundGuard } from "../outbound/outbound-guard.js";
import type { CallContext } from "../rpc/call-context.js";
import { contentProblem, recipientProblem, senderProblem } from "../services/message-fields.js";
import { checkOutboundUrls } from "./outbound-checks.js";
import { previewRequests } from "./request-preview.js";
import { acceptedSendResult, failedSendResult } from "./send-result.js";

/**
 * Recipient of a dry run that names none. The North American numbering plan
 * reserves 555-0100 to 555-0199 for fiction, so no phone has this number.
 */
export const PLACEHOLDER_TO = "+15555550100";

/** Text of a dry run that names none. */
export const PLACEHOLDER_CONTENT = "Test message from smsgateway";

/**
 * Name of an unsaved integration without an id, in flow control, metrics,
 * logs and messages. It is not a valid integration id, so it never names a
 * stored integration, but every such test shares its limits and circuit breaker.
 */
export const UNSAVED_INTEGRATION_ID = "(unsaved)";

/**
 * Returns the name of an unsaved integration in flow control, metrics, logs
 * and messages: {@link UNSAVED_INTEGRATION_ID} without an id, else the id
 * followed by ` (unsaved)`. Neither is a valid integration id, so failed tests
 * of an edit never open the circuit breaker that the stored integration's sends use.
 */
export function unsavedIntegrationName(id: string): string {
  return id === "" ? UNSAVED_INTEGRATION_ID : `${id} ${UNSAVED_INTEGRATION_ID}`;
}

/** The SMS of a test, with the fields that placeholders filled. */
export interface TestMessage {
  message: SmsMessage;
  /** `to` and `content` when placeholders stand in for them. */
  placeholderFields: string[];
}

/** Per-call options of `IntegrationTester.test`. */
export interface TestOptions {
  /** Send the test SMS; false only shows what would be sent. */
  send: boolean;
  /** True when `integration` is not stored as it is: a new integration, or an edit of a stored one. */
  unsaved: boolean;
  context: CallContext;
}

/** Collaborators of an `IntegrationTester`: the ones every send goes through. */
export interface IntegrationTesterOptions {
  outbound: OutboundGuard;
  dispatcher: Dispatcher;
  gate: SendGate;
}

/**
 * Reads the SMS of a TestIntegration request. A dry run may leave `to` and
 * `content` empty, and placeholders stand in for them. With `send`, both
 * are required. Given fields are checked as SendSms checks them.
 *
 * @throws InvalidArgumentError naming every invalid field.
 */
export function testMessage(request: TestIntegrationRequest): TestMessage {
  const violations: FieldViolation[] = [];
  const placeholderFields: string[] = [];
  const add = (field: string, description: string | null) => {
    if (description !== null) {
      violations.push({ field, description });
    }
  };

  let to = request.to;
  if (to.trim() === "" && !request.send) {
    to = PLACEHOLDER_TO;
    placeholderFields.push("to");
  } else {
    add("to", to.trim() === "" ? "required when send is true: the phone number that receives the test SMS" : recipientProblem(to));
  }
  let content = request.content;
  if (content === "" && !request.send) {
    content = PLACEHOLDER_CONTENT;
    placeholderFields.push("content");
  } else {
    add("content", content === "" ? "required when send is true: the text of the test SMS" : contentProblem(content));
  }
  add("sender", senderProblem(request.sender));

  if (violations.length > 0) {
    throw new InvalidArgumentError(violations);
  }
  return { message: { to, content, sender: request.sender, passthrough: request.passthrough }, placeholderFields };
}

/**
 * Tests an integration. It shows the requests a send would make and the
 * SSRF guard's verdict on its URLs. On request, it also sends a test SMS
 * through the path every send takes: flow control, the SSRF guard, the
 * token request and the dispatcher. The test SMS makes one attempt with a
 * new token, without the retries and the token cache of `SendSms`, so the
 * result shows the gateway's first reply.
 *
 * A test SMS that fails is an outcome of the test, reported in the result
 * with the code and message that `SendSms` would return if its first
 * attempt failed in the same way, so the call succeeds.
 */
export class IntegrationTester {
  constructor(private readonly options: IntegrationTesterOptions) {}

  /**
   * Tests `integration` with the SMS `test`.
   *
   * @throws InvalidArgumentError when the passthrough fields are invalid,
   *   before anything is resolved or sent.
   */
  async test(integration: Integration, test: TestMessage, options: TestOptions): Promise<TestIntegrationResponse> {
    const named = options.unsaved ? { ...integration, id: unsavedIntegrationName(integration.id) } : integration;
    const requests = previewRequests(named, test.message);
    const outboundChecks = await checkOutboundUrls(this.options.outbound, named, options.context.signal);

    const response = create(TestIntegrationResponseSchema, {
      tokenRequest: requests.token,
      smsRequest: requests.sms,
      outboundChecks,
      placeholderFields: test.placeholderFields,
    });
    if (options.send) {
      response.sendResult = await this.sendTest(named, test.message, options.context);
    }
    return response;
  }

  /** Sends the test SMS in one attempt, and turns a send failure into a result. */
  private async sendTest(integration: Integration, message: SmsMessage, context: CallContext): Promise<TestSendResult> {
    const { dispatcher, gate } = this.options;
    const deadlineMs = context.timeoutMs();
    const fields = { integrationId: integration.id, to: maskPhone(message.to) };
    try {
      const { requestId } = context;
      const sent = await gate.run(integration, { deadlineMs, requestId }, () =>
        dispatcher.send(integration, message, { signal: context.signal, deadlineMs, includeReplyExcerpt: true, requestId }),
      );
      context.log.info({ ...fields, status: sent.httpStatus }, "test SMS accepted by the gateway");
      return acceptedSendResult(sent);
    } catch (error) {
      // A caller that canceled or passed its deadline gets that error, because it reads no result.
      const result = context.signal.aborted ? undefined : failedSendResult(error);
      if (result === undefined) {
        throw error;
      }
      context.log.info({ ...fields, code: result.failure?.code, status: result.gatewayStatus }, "test SMS failed");
      return result;
    }
  }
}
