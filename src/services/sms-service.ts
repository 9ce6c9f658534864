import { performance } from "node:perf_hooks";

import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { Logger } from "pino";
import {
  DateSource,
  SendSmsResponseSchema,
  type SendSmsBatchRequest,
  type SendSmsBatchResponse,
  type SendSmsRequest,
  type SendSmsResponse,
} from "../../gen/smsgateway/v1/sms_service_pb.js";
import { BatchPausedError, responseReserveMs, runBatch, type MessageOutcome, type MessageSendOptions } from "../batch/batch-runner.js";
import type { Delivery, KeyedResult } from "../delivery/delivery.js";
import { buildSmsRequest, type SmsMessage } from "../dispatch/sms-request.js";
import {
  FlowLimitError,
  GatewayError,
  IdempotencyError,
  InvalidArgumentError,
  MessageNotStartedError,
  type FieldViolation,
} from "../errors.js";
import { queuedSendLimit } from "../flow/concurrency-slots.js";
import type { SendGate } from "../flow/send-gate.js";
import type { CallContext } from "../rpc/call-context.js";
import { assertSecretsReadable } from "../security/unreadable-secrets.js";
import type { StoredIntegration } from "../store/integration-store.js";
import { batchEntries, batchViolations, type BatchEntry } from "./batch-request.js";
import { batchResponse } from "./batch-response.js";
import type { IntegrationService } from "./integration-service.js";
import { logLookupProblem, lookUpKeptOutcome, LookupProblems } from "./kept-outcome-lookup.js";
import { integrationIdViolations, messageViolations } from "./send-validation.js";

/** Settings of `SendSmsBatch`. The config module owns their defaults. */
export interface BatchSettings {
  /** `BATCH_MAX_MESSAGES`: maximum messages in one call. */
  maxMessages: number;
  /** `BATCH_CONCURRENCY`: maximum messages of one call in flight, before the integration's own limit less one caps it. */
  concurrency: number;
  /** `RETRY_AFTER_MAX_MS`: longest wait that a gateway's 429 may ask of a batch before it starts no further message. */
  gatewayWaitMaxMs: number;
}

/** Facts of the call that the send of one SMS uses. */
interface SendCall {
  signal: AbortSignal;
  /** Milliseconds the send may take, undefined without a deadline. */
  deadlineMs: number | undefined;
  requestId: string;
  log: Logger;
  /** Set for a message of a batch: it waits for a concurrency slot until this signal aborts, instead of failing at once. */
  waitForSlot?: AbortSignal;
  /** Set for a message of a batch: reads its integration again once it has a slot it waited for. */
  reread?: () => Promise<StoredIntegration>;
  /** Set for a message of a batch: learns of a failed send before its concurrency slot is given back. */
  reportFailure?: (error: unknown) => void;
  /** Set for a message of a batch: counts its key lookups that got no result, which the batch logs once. */
  lookupProblems?: LookupProblems;
  /**
   * Set for a message of a batch whose earlier try found neither a kept
   * outcome of its key nor another send's claim of it. This try does not
   * look the key up again.
   */
  keyHasNoOutcome?: boolean;
  /** Set for a message of a batch: records that a lookup found neither a kept outcome of its key nor a claim of it. */
  onNoOutcome?: () => void;
  /** Set for a message of a batch: runs right before its first SMS request, and throws while the batch is paused. */
  beforeFirstRequest?: () => void;
}

/** Implements `smsgateway.v1.SmsService`. */
export class SmsService {
  constructor(
    private readonly integrations: IntegrationService,
    private readonly delivery: Delivery,
    private readonly gate: SendGate,
    private readonly batch: BatchSettings,
    /** Aborts when the service begins to shut down, so that batches stop starting messages. */
    private readonly stopping?: AbortSignal,
  ) {}

  async sendSms(request: SendSmsRequest, context: CallContext): Promise<SendSmsResponse> {
    throwIfInvalid([...integrationIdViolations(request.integrationId), ...messageViolations(request, "")]);

    const logFields: Record<string, unknown> = { integrationId: request.integrationId };
    context.logFields = logFields;
    const integration = await this.integrations.load(request.integrationId, "integration_id");
    assertSecretsReadable(integration, context.log);
    const message = {
      to: request.to,
      content: request.content,
      sender: request.sender,
      passthrough: request.passthrough,
      idempotencyKey: request.idempotencyKey,
    };
    const call = { signal: context.signal, deadlineMs: context.timeoutMs(), requestId: context.requestId, log: context.log };
    const response = await this.#send(integration, message, call, "");
    logFields.messageId = loggedMessageId(response.id);
    logFields.replayed = response.replayed;
    return response;
  }

  async sendSmsBatch(request: SendSmsBatchRequest, context: CallContext): Promise<SendSmsBatchResponse> {
    throwIfInvalid(batchViolations(request, this.batch.maxMessages));

    const integration = await this.integrations.load(request.integrationId, "integration_id");
    // Problems of the integration or of the batch's own fields are checked
    // once, so that they fail the call with one error instead of every message.
    assertSecretsReadable(integration, context.log);
    if (request.passthrough !== undefined) {
      // Builds, and discards, a request only to check the passthrough against the integration.
      buildSmsRequest(integration, { to: "", content: "", passthrough: request.passthrough });
    }

    const entries = batchEntries(request);
    // Messages that reached #send, which looks up a rejected message's kept outcome itself.
    const reachedSend = new Uint8Array(entries.length);
    // Messages whose key a lookup found with neither a kept outcome nor another send's claim.
    const noOutcome = new Uint8Array(entries.length);
    const lookupProblems = new LookupProblems();
    const send = async (index: number, options: MessageSendOptions) => {
      const entry = entries[index]!;
      throwIfInvalid(entry.violations);
      // Each message reads the integration when it starts, from the cache unless it changed, so
      // that a change made while the batch runs applies to the messages that start after it.
      const current = () => this.#batchIntegration(request.integrationId, options, context);
      // A message that waited for a slot may find the batch paused by another message's 429 meanwhile.
      const reread = () => (options.gatewayWaitLeftMs() > 0 ? Promise.reject(new BatchPausedError()) : current());
      const call = {
        signal: context.signal,
        deadlineMs: options.deadlineMs,
        requestId: context.requestId,
        log: context.log,
        waitForSlot: options.startSignal,
        reread,
        reportFailure: options.reportFailure,
        lookupProblems,
        keyHasNoOutcome: noOutcome[index] === 1,
        onNoOutcome: () => {
          noOutcome[index] = 1;
        },
        // A 429 of another message may have paused the batch while this one read the store or
        // fetched a token, after the runner's check. A key it claimed is then left retryable with
        // nothing sent, so a concurrent call waiting for the key claims it and sends.
        beforeFirstRequest: () => {
          if (options.gatewayWaitLeftMs() > 0) {
            throw new BatchPausedError();
          }
        },
      };
      const integrationNow = await current();
      reachedSend[index] = 1;
      return this.#send(integrationNow, entry.sms, call, entry.passthroughPrefix);
    };
    const deadlineMs = context.timeoutMs();
    const outcomes = await runBatch(entries.length, send, {
      concurrency: this.#batchConcurrency(integration),
      signal: context.signal,
      deadlineMs,
      stopping: this.stopping,
      gatewayWaitMaxMs: this.batch.gatewayWaitMaxMs,
    });
    // The lookups end where the batch ends, before the time it keeps back for its response.
    const lookupMs = deadlineMs === undefined ? undefined : context.timeoutMs()! - responseReserveMs(deadlineMs, entries.length);
    const replayed = await this.#replayRejected(outcomes, entries, { reachedSend, noOutcome }, integration, {
      signal: context.signal,
      log: context.log,
      deadlineMs: lookupMs,
      lookupProblems,
    });
    lookupProblems.log(context.log, integration.id);
    const named = replayed.map((outcome, index) => withKeyPath(outcome, entries[index]!));

    return batchResponse(named, integration.id, context.log);
  }

  /**
   * Reads the integration of a batch message as stored now, checks its
   * secrets, and fits the batch's concurrency to its current limit.
   *
   * @throws NotFoundError when the integration was deleted, which stops the batch.
   */
  async #batchIntegration(id: string, options: MessageSendOptions, context: CallContext): Promise<StoredIntegration> {
    const integration = await this.integrations.load(id, "integration_id");
    assertSecretsReadable(integration, context.log);
    options.setConcurrency(this.#batchConcurrency(integration));
    return integration;
  }

  /**
   * Returns how many messages of a batch may be in flight at once:
   * BATCH_CONCURRENCY, or fewer when the integration's limit less the slot
   * left to SendSms is lower. More would only wait in the gate's queue.
   */
  #batchConcurrency(integration: StoredIntegration): number {
    return Math.min(this.batch.concurrency, queuedSendLimit(this.gate.limitsFor(integration).maxConcurrentSends));
  }

  /**
   * Sends one valid SMS, of a `SendSms` call or of a batch, through an
   * integration whose secrets are readable: passes the integration's flow
   * control, and delivers with retries and the idempotency key.
   * `passthroughPrefix` is the path of the message's passthrough in the
   * request, which errors about it name.
   */
  async #send(integration: StoredIntegration, message: SmsMessage, call: SendCall, passthroughPrefix: string): Promise<SendSmsResponse> {
    const { signal, requestId } = call;
    // A batch message whose earlier try found its key with neither a kept outcome nor another send's
    // claim looks it up no more. A later send of the key by another call cannot make it send twice,
    // because it claims the key before its request, and that claim returns the other send's outcome
    // (IdempotencyKeys.run).
    // NOTE: a message that flow control rejects for good after another call sent its key meanwhile
    // reports the rejection, not that send. A repeat with the key gets the kept outcome.
    const mayHaveOutcome = (message.idempotencyKey ?? "") !== "" && call.keyHasNoOutcome !== true;
    // Past a closed circuit, a replay would wait for the probe or be rejected, so the kept outcome
    // is looked up first. A closed circuit saves the lookup, which the send makes anyway.
    const lookedUp = mayHaveOutcome && this.gate.circuitNotClosed(integration.id);
    const startedAt = performance.now();
    if (lookedUp) {
      const stored = await this.#storedOutcome(integration, message, call);
      if (stored !== undefined) {
        return sendSmsResponse(stored);
      }
    }
    const deadlineMs = lookedUp ? timeLeftMs(call.deadlineMs, startedAt) : call.deadlineMs;

    // NOTE: the passthrough fields are validated after the gate admitted the
    // send, so an invalid passthrough, like a replayed idempotent send, still
    // takes a rate token.
    const gateOptions = { deadlineMs, requestId, waitForSlot: call.waitForSlot, reread: call.reread };
    let result: KeyedResult;
    try {
      const report = call.reportFailure;
      result = await this.gate.run(integration, gateOptions, (deadlineMs, current) => {
        const sent = this.delivery.send(current, message, { signal, deadlineMs, requestId, beforeFirstRequest: call.beforeFirstRequest });
        return report === undefined ? sent : sent.catch((error: unknown) => failAfterReport(error, report));
      });
    } catch (error) {
      // A repeat of a key that already sent must report that send, not that flow control rejected it.
      const lookup = { ...call, deadlineMs: timeLeftMs(call.deadlineMs, startedAt) };
      const stored = mayHaveOutcome && !lookedUp && error instanceof FlowLimitError ? await this.#storedOutcome(integration, message, lookup) : undefined;
      if (stored !== undefined) {
        return sendSmsResponse(stored);
      }
      throw prefixedFields(error, passthroughPrefix);
    }

    return sendSmsResponse(result);
  }

  /**
   * Returns the kept outcome of a message's idempotency key, or undefined
   * when it has none, another send has claimed the key, or the lookup got
   * no result in time. When the key has neither an outcome nor a claim,
   * `call.onNoOutcome` is called. A lookup without a result is
   * logged (for a batch, counted and logged once), because the caller then
   * gets the result the send would have given without it. A stored failure
   * is thrown, and so is the error of a key that belongs to another request
   * or whose outcome is unknown. The lookup ends with the call, and at the
   * latest after SEND_TIMEOUT_MS.
   */
  async #storedOutcome(
    integration: StoredIntegration,
    message: SmsMessage,
    call: Pick<SendCall, "signal" | "log" | "deadlineMs" | "lookupProblems" | "onNoOutcome">,
  ): Promise<KeyedResult | undefined> {
    const limitMs = Math.min(call.deadlineMs ?? Number.POSITIVE_INFINITY, this.gate.sendTimeoutMs);
    const outcome = await lookUpKeptOutcome(() => this.delivery.storedOutcome(integration, message), call.signal, limitMs);
    if (outcome.kind === "found") {
      return outcome.result;
    }
    if (outcome.kind === "none") {
      call.onNoOutcome?.();
      return undefined;
    }
    if (outcome.kind === "claimed") {
      return undefined;
    }
    if (call.lookupProblems === undefined) {
      logLookupProblem(call.log, integration.id, outcome, limitMs);
    } else {
      call.lookupProblems.record(outcome);
    }
    return undefined;
  }

  /**
   * Replaces the flow-control rejections of keyed messages that never
   * reached a send, and the messages that a gateway's 429 kept from
   * starting, with the kept outcomes of their keys. An open circuit or a
   * long Retry-After fails every message not yet started, and a repeated
   * batch must still report the messages that an earlier call sent. A
   * message whose earlier try found its key with neither an outcome nor a
   * claim is not looked up again, as in #send.
   */
  async #replayRejected(
    outcomes: MessageOutcome<SendSmsResponse>[],
    entries: readonly BatchEntry[],
    tries: { reachedSend: Uint8Array; noOutcome: Uint8Array },
    integration: StoredIntegration,
    call: Pick<SendCall, "signal" | "log" | "deadlineMs"> & { lookupProblems: LookupProblems },
  ): Promise<MessageOutcome<SendSmsResponse>[]> {
    const rejected = outcomes.flatMap((outcome, index) => {
      const keyed = (entries[index]!.sms.idempotencyKey ?? "") !== "";
      const lookUp = !outcome.ok && keyed && tries.noOutcome[index] === 0 && needsLookup(outcome.error, tries.reachedSend[index] === 1);
      return lookUp ? [index] : [];
    });
    // All the lookups share one time limit, and none starts once it has passed or the call ended.
    const endsAt = performance.now() + Math.min(call.deadlineMs ?? Number.POSITIVE_INFINITY, this.gate.sendTimeoutMs);
    for (let start = 0; start < rejected.length; start += REPLAY_LOOKUPS_IN_FLIGHT) {
      const leftMs = endsAt - performance.now();
      if (call.signal.aborted || leftMs <= 0) {
        call.lookupProblems.notStarted += rejected.length - start;
        break;
      }
      const lookup = { ...call, deadlineMs: leftMs };
      await Promise.all(
        rejected.slice(start, start + REPLAY_LOOKUPS_IN_FLIGHT).map(async (index) => {
          try {
            const stored = await this.#storedOutcome(integration, entries[index]!.sms, lookup);
            if (stored !== undefined) {
              outcomes[index] = { ok: true, value: sendSmsResponse(stored) };
            }
          } catch (error) {
            outcomes[index] = { ok: false, error };
          }
        }),
      );
    }
    return outcomes;
  }
}

/**
 * Returns whether the kept outcome of a failed keyed batch message must be
 * looked up. That is the case when flow control rejected it before it
 * reached a send, which looks up by itself. It is also the case when a
 * gateway's Retry-After kept it from starting, because no send looks up then.
 */
function needsLookup(error: unknown, reachedSend: boolean): boolean {
  if (error instanceof FlowLimitError) {
    return !reachedSend;
  }
  return error instanceof MessageNotStartedError && error.reason === "gateway_rate_limited";
}

/** Lookups of stored outcomes that {@link SmsService} runs at once for the rejected messages of a batch. */
const REPLAY_LOOKUPS_IN_FLIGHT = 16;

function sendSmsResponse(result: KeyedResult): SendSmsResponse {
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

/**
 * Returns what is left now of a deadline of `deadlineMs` counted from
 * `startedAt`, or undefined without a deadline: a send without one keeps its
 * own SEND_TIMEOUT_MS.
 */
function timeLeftMs(deadlineMs: number | undefined, startedAt: number): number | undefined {
  return deadlineMs === undefined ? undefined : deadlineMs - (performance.now() - startedAt);
}

/** Maximum length of a gateway message id in a log line, in UTF-16 code units. */
const LOGGED_ID_MAX_CHARS = 128;

/** Returns the gateway's message id for the log, a longer one cut to {@link LOGGED_ID_MAX_CHARS} code units and followed by `…`. */
function loggedMessageId(id: string): string {
  return id.length <= LOGGED_ID_MAX_CHARS ? id : `${id.slice(0, LOGGED_ID_MAX_CHARS)}…`;
}

/** Passes a failed send's error to `report`, then throws it again. */
function failAfterReport(error: unknown, report: (error: unknown) => void): never {
  report(error);
  throw error;
}

function throwIfInvalid(violations: FieldViolation[]): void {
  if (violations.length > 0) {
    throw new InvalidArgumentError(violations);
  }
}

/**
 * Returns the outcome of a batch message with its idempotency error naming
 * the key by its path in the batch request, as its invalid fields are named.
 * Any other outcome is returned as it is.
 */
function withKeyPath(outcome: MessageOutcome<SendSmsResponse>, entry: BatchEntry): MessageOutcome<SendSmsResponse> {
  if (outcome.ok || !(outcome.error instanceof IdempotencyError)) {
    return outcome;
  }
  return { ok: false, error: outcome.error.withField(entry.fieldPrefix + outcome.error.field) };
}

/** Returns an InvalidArgumentError with `prefix` before each field it names, or any other error as it is. */
function prefixedFields(error: unknown, prefix: string): unknown {
  if (!(error instanceof InvalidArgumentError) || prefix === "") {
    return error;
  }
  return new InvalidArgumentError(error.violations.map((violation) => ({ ...violation, field: prefix + violation.field })));
}
