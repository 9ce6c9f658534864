import { setTimeout as sleep } from "node:timers/promises";

import type { Logger } from "pino";

import type { Integration } from "../domain/integration.js";
import type { Dispatcher, SendResult, SmsRequest } from "../dispatch/dispatcher.js";
import type { ServiceMetrics } from "../observability/metrics.js";
import { OUTCOME_UNKNOWN_ADVICE } from "../dispatch/gateway-errors.js";
import { maskPhone } from "../dispatch/mask.js";
import { SendDeadline, type DeadlineEnd } from "../dispatch/send-deadline.js";
import { GatewayError } from "../errors.js";
import { decideRetry, type RetrySettings, type StopReason } from "./retry-policy.js";
import type { TokenCache, TokenLease } from "./token-cache.js";

/** Settings and collaborators of a {@link RetryingSender}. */
export interface RetryingSenderOptions {
  dispatcher: Dispatcher;
  tokens: TokenCache;
  settings: RetrySettings;
  logger: Logger;
  /** Returns a number in [0, 1) for the backoff jitter; tests replace it. */
  random?: () => number;
  /** Counts each retry by the failure that caused it. */
  metrics?: ServiceMetrics;
}

/** Counts of one send, for its result and its final error. */
interface SendProgress {
  /** SMS requests tried, a refused connection included. */
  smsAttempts: number;
  /** Rounds that asked the token cache for a token. */
  tokenRounds: number;
  /** True when an earlier SMS request may have reached the gateway. */
  earlierOutcomeUnknown: boolean;
  /** True when the send has an idempotency key. */
  keyed: boolean;
}

/** Ends the message of a keyed send that may have reached the gateway. */
const KEYED_REPEAT_ADVICE =
  "A repeat with the same idempotency_key sends again with the same Idempotency-Key header, which a gateway that deduplicates by it ignores.";

/**
 * Sends one SMS request with retries, where a retry cannot send the SMS
 * twice: after a failure before the request was written, a 408, a 429 or a 503.
 * With an idempotency key, also after a 500, 502 or 504, or a timeout or
 * reset after the request was written, because the caller's key lets a
 * gateway that honours `Idempotency-Key` drop the repeat. Each round gets a token from the token cache first. A
 * 401 to a cached token refreshes it and repeats the request once, outside
 * the attempt limit, because the gateway rejected that request without acting on it.
 */
export class RetryingSender {
  private readonly dispatcher: Dispatcher;
  private readonly tokens: TokenCache;
  private readonly settings: RetrySettings;
  private readonly log: Logger;
  private readonly metrics: ServiceMetrics | undefined;
  private readonly random: () => number;

  constructor(options: RetryingSenderOptions) {
    this.dispatcher = options.dispatcher;
    this.tokens = options.tokens;
    this.settings = options.settings;
    this.log = options.logger.child({ component: "delivery" });
    this.metrics = options.metrics;
    this.random = options.random ?? Math.random;
  }

  /**
   * Sends `sms` through `integration` within `deadline`, retrying as the
   * class describes, and returns the accepted reply with `attempts` set to
   * the number of SMS requests tried. `beforeFirstRequest` runs right before
   * the first SMS request, after the token fetch, and what it throws ends
   * the send before any request.
   *
   * @throws GatewayError of the last attempt when the send fails. Its
   *   `attempts` counts every attempt, `outcomeUnknown` is set when any
   *   attempt may have reached the gateway, and its message states why the
   *   retries stopped.
   */
  async send(
    integration: Integration,
    sms: SmsRequest,
    deadline: SendDeadline,
    hasIdempotencyKey: boolean,
    beforeFirstRequest?: () => void,
  ): Promise<SendResult> {
    const progress: SendProgress = { smsAttempts: 0, tokenRounds: 0, earlierOutcomeUnknown: false, keyed: hasIdempotencyKey };
    let refreshedStaleToken = false;
    let limitedAttempts = 0;

    for (;;) {
      limitedAttempts += 1;
      // Without a key a stalled request is never repeated, so it may use the whole deadline.
      const attemptDeadline = hasIdempotencyKey
        ? new SendDeadline(Math.min(deadline.remainingMs(), this.settings.attemptTimeoutMs), deadline.signal, deadline.requestId)
        : deadline;
      let lease: TokenLease | undefined;
      let failure: GatewayError;
      try {
        if (integration.authenticateByToken) {
          progress.tokenRounds += 1;
          lease = await this.tokens.get(integration, attemptDeadline);
        }
        if (progress.smsAttempts === 0) {
          beforeFirstRequest?.();
        }
        progress.smsAttempts += 1;
        const result = await this.dispatcher.postSms(integration, sms, attemptDeadline, lease?.token);
        return { ...result, attempts: progress.smsAttempts };
      } catch (error) {
        if (!(error instanceof GatewayError)) {
          throw error;
        }
        failure = error;
        if (error.info.stage === "send" && error.info.attempts === 0) {
          // The deadline was spent before the request started, so this was no attempt.
          progress.smsAttempts -= 1;
        }
      } finally {
        if (attemptDeadline !== deadline) {
          attemptDeadline.dispose();
        }
      }

      const { info } = failure;
      if (lease?.fromCache === true && !refreshedStaleToken && info.stage === "send" && info.httpStatus === 401) {
        this.tokens.invalidate(integration, lease.token);
        refreshedStaleToken = true;
        limitedAttempts -= 1;
        this.log.info({ requestId: deadline.requestId, integrationId: integration.id, attempt: progress.smsAttempts }, "gateway rejected the cached token with HTTP 401; fetching a new one");
        continue;
      }

      if (deadline.ended === "canceled" || deadline.ended === "shutdown") {
        throw finalError(failure, progress, deadline.ended);
      }
      const decision = this.dispatcher.isClosed
        ? ({ retry: false, reason: "not_retryable" } as const)
        : decideRetry(
            info,
            {
              attempts: limitedAttempts,
              hasIdempotencyKey,
              remainingMs: deadline.ended === undefined ? deadline.remainingMs() : 0,
            },
            this.settings,
            this.random,
          );
      if (!decision.retry) {
        throw finalError(failure, progress, decision.reason);
      }
      progress.earlierOutcomeUnknown ||= info.outcomeUnknown === true;
      this.metrics?.webhookRetry(integration.id, info.failure);

      this.log.info(
        {
          requestId: deadline.requestId,
          integrationId: integration.id,
          to: maskPhone(sms.to),
          attempt: progress.smsAttempts,
          stage: info.stage,
          failure: info.failure,
          status: info.httpStatus,
          delayMs: decision.delayMs,
        },
        "retrying SMS send",
      );
      try {
        await sleep(decision.delayMs, undefined, { signal: deadline.signal });
      } catch {
        // Only the caller or the shutdown can end the wait early, because the wait fits in the deadline.
        throw finalError(failure, progress, endedEarlyBy(deadline));
      }
    }
  }
}

/**
 * Returns who ended the send's deadline before its time ran out. A function,
 * because the type of `deadline.ended` checked before an await does not show
 * that the deadline may have ended during it.
 */
function endedEarlyBy(deadline: SendDeadline): "canceled" | "shutdown" {
  return deadline.ended === "shutdown" ? "shutdown" : "canceled";
}

/** Why a send stopped: a policy decision, or the caller or the shutdown ending it. */
type FinalReason = StopReason | Exclude<DeadlineEnd, "timeout">;

/** Returns the sentence that states why a send stopped after a retryable failure, or "" when none is needed. */
function stopSentence(reason: FinalReason, progress: SendProgress, info: GatewayError["info"]): string {
  const attempts = info.stage === "send" ? progress.smsAttempts : progress.tokenRounds;
  const tries = attempts === 1 ? "1 attempt" : `${attempts} attempts`;
  switch (reason) {
    case "no_idempotency_key":
      return "It was not retried, because without an idempotency_key a retry could send the SMS twice. Set idempotency_key to allow retries.";
    case "attempt_limit":
      return attempts > 1 ? `The service gave up after ${tries} (SEND_MAX_ATTEMPTS).` : "";
    case "deadline":
      return attempts === 0 ? "" : `The service stopped after ${tries} because the deadline left no time for another.`;
    case "retry_after_too_long":
      return "The gateway's Retry-After is longer than RETRY_AFTER_MAX_MS, so the service did not wait for it.";
    case "canceled":
      return `The caller canceled the send after ${tries}, so it was not retried.`;
    case "shutdown":
      // A request cut by the shutdown already states it in its own message.
      return info.failure === "canceled" ? "" : `The service was shutting down, so the send was not retried after ${tries}.`;
    default:
      return "";
  }
}

/** Builds the error a send reports: the last failure, with the counts and the reason it was final. */
function finalError(last: GatewayError, progress: SendProgress, reason: FinalReason): GatewayError {
  const { info } = last;
  const attempts = info.stage === "send" ? progress.smsAttempts : progress.tokenRounds;
  const outcomeUnknown = info.outcomeUnknown === true || progress.earlierOutcomeUnknown;
  const sentences = [last.message];
  if (progress.earlierOutcomeUnknown && info.outcomeUnknown !== true) {
    sentences.push(`An earlier attempt got no reply. ${OUTCOME_UNKNOWN_ADVICE}`);
  }
  const stop = stopSentence(reason, progress, info);
  if (stop !== "") {
    sentences.push(stop);
  }
  if (outcomeUnknown && progress.keyed) {
    sentences.push(KEYED_REPEAT_ADVICE);
  }
  return new GatewayError(
    sentences.join(" "),
    { ...info, attempts, ...(outcomeUnknown ? { outcomeUnknown } : {}) },
    { cause: last.cause ?? last },
  );
}
