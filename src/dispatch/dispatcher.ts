import type { Logger } from "pino";
import { Agent, type Dispatcher as UndiciDispatcher } from "undici";

import { copyWith } from "../copy-with.js";
import type { Integration } from "../domain/integration.js";
import { GatewayError, OutboundBlockedError, type GatewayStage } from "../errors.js";
import { ServiceMetrics, type GatewayOutcome } from "../observability/metrics.js";
import { outboundField, outboundTargets, type OutboundGuard } from "../outbound/outbound-guard.js";
import { authReplyExcerpt, readAuthReply } from "./auth-reply.js";
import {
  closedError,
  invalidAuthReplyError,
  statusError,
  transportError,
  type RequestContext,
} from "./gateway-errors.js";
import { describeBodyFailure, readSendReply, unreadSendReply } from "./gateway-reply.js";
import { maskPhone } from "./mask.js";
import { readArrivedBodyStart, readBodyUnlessTooLong, UNREAD_BODY, type BodyStart } from "./read-body.js";
import {
  buildArrivedBodyExcerpt,
  buildBodyExcerpt,
  excerptReadBytes,
  redactSecrets,
  redactValue,
  secretForms,
  type BodyExcerpt,
} from "./redact.js";
import { SendDeadline } from "./send-deadline.js";
import { buildSmsRequest, credentialHeaders, type SmsMessage, type SmsRequest } from "./sms-request.js";
import { WriteTracker } from "./write-tracker.js";

export type { JsonObject, JsonValue } from "./json-value.js";
export type { Passthrough, SmsMessage, SmsRequest } from "./sms-request.js";

/** A token from `auth_url`, with the lifetime its reply gave, if any. */
export interface FetchedToken {
  token: string;
  /** `expires_in` of the auth reply, in seconds. */
  expiresInSeconds?: number;
}

/** Settings of a `Dispatcher`. The config module owns their defaults. */
export interface DispatcherOptions {
  /** Total time for one send in milliseconds, the token request included. */
  timeoutMs: number;
  /** Maximum size of a reply body that is read, in bytes. */
  maxResponseBytes: number;
  /** Maximum number of connections to one gateway origin. */
  maxConnectionsPerOrigin: number;
  /** Time an idle connection stays open for reuse, in milliseconds. */
  keepAliveTimeoutMs: number;
  /** The SSRF guard: checks the URLs before each send, and every connection through its connector. */
  outbound: OutboundGuard;
  logger: Logger;
  /** Counts SMS requests and token requests; a private registry when unset. */
  metrics?: ServiceMetrics;
}

/** Per-send options of `Dispatcher.send`. */
export interface SendOptions {
  /** Aborts the send. The outbound request is aborted and the send fails as `canceled`. */
  signal?: AbortSignal;
  /** Time the caller allows for the send in milliseconds, used when it is below `timeoutMs`. */
  deadlineMs?: number;
  /** Also return the start of the reply body as `replyExcerpt`, for a test of the integration. */
  includeReplyExcerpt?: boolean;
  /** Id of the call that the send serves, which the send's log lines carry. */
  requestId?: string;
}

/** The outcome of a send that the gateway accepted with a 2xx reply. */
export interface SendResult {
  /** The gateway's message id, digit-exact for numbers, `""` when the reply had none. */
  id: string;
  /** The gateway's date, else the send time. */
  date: Date;
  /** The date exactly as the gateway gave it, `""` when it gave none. */
  rawDate: string;
  dateSource: "gateway" | "send_time";
  /** Status of the gateway's reply to the SMS request. */
  httpStatus: number;
  /** Number of SMS requests sent. */
  attempts: number;
  /** Problems with the reply that did not stop the send, such as `no id at data.id`. */
  warnings: string[];
  /** The first 1 KiB of the reply body, secrets redacted; set only with `includeReplyExcerpt`. */
  replyExcerpt?: BodyExcerpt;
}

/** A 2xx reply whose body was read up to the size limit. */
interface AcceptedReply {
  status: number;
  body: BodyStart;
  /** Reason the body could not be read, set only when it failed to arrive. */
  bodyFailure?: string;
}

/** One request of a send: where it goes, and what its errors must name and hide. */
interface Exchange {
  integration: Integration;
  stage: GatewayStage;
  url: string;
  headers: Record<string, string>;
  body: string;
  /** Secrets that error messages and excerpts must not show. */
  secrets: readonly string[];
  /** Id of the call that the request serves, for log lines. */
  requestId: string | undefined;
}

/**
 * Sends SMS by POSTing JSON to the REST endpoint of an integration's gateway.
 *
 * One instance serves every integration. It owns a single undici `Agent`
 * that pools keep-alive connections per gateway origin, so create one
 * `Dispatcher` per process and call `close` on shutdown. Redirects are never
 * followed, because a redirect would carry the credential headers to a
 * host that the integration does not name.
 */
export class Dispatcher {
  private readonly agent: Agent;
  private readonly log: Logger;
  private readonly timeoutMs: number;
  private readonly maxResponseBytes: number;
  private readonly outbound: OutboundGuard;
  private readonly metrics: ServiceMetrics;
  private closed = false;

  constructor(options: DispatcherOptions) {
    this.timeoutMs = options.timeoutMs;
    this.maxResponseBytes = options.maxResponseBytes;
    this.log = options.logger.child({ component: "dispatcher" });
    this.outbound = options.outbound;
    this.metrics = options.metrics ?? new ServiceMetrics();
    this.agent = new Agent({
      connections: options.maxConnectionsPerOrigin,
      keepAliveTimeout: options.keepAliveTimeoutMs,
      keepAliveMaxTimeout: options.keepAliveTimeoutMs,
      connect: options.outbound.connector({ timeout: options.timeoutMs }),
      headersTimeout: options.timeoutMs,
      bodyTimeout: options.timeoutMs,
    });
  }

  /**
   * Sends one SMS through an integration and returns what the gateway replied.
   *
   * With token authentication, a token request to `authUrl` comes first, and
   * its failure stops the send before any SMS request. Any 2xx reply to the
   * SMS request is a send, even without an id: check `warnings`. The send
   * takes at most `timeoutMs`, or `deadlineMs` when that is smaller. It makes
   * one attempt and never retries: `Delivery` adds retries and token caching.
   *
   * @throws InvalidArgumentError when the passthrough headers or query are
   *   invalid. Nothing is sent then.
   * @throws GatewayError when the gateway did not accept the message. Its
   *   `info.failure` names the cause, and neither its message nor its excerpt contains the secrets.
   */
  async send(integration: Integration, message: SmsMessage, options: SendOptions = {}): Promise<SendResult> {
    const sms = buildSmsRequest(integration, message);
    const deadline = new SendDeadline(this.budgetMs(options.deadlineMs), options.signal, options.requestId);
    try {
      await this.checkOutbound(integration, deadline);
      const token = integration.authenticateByToken ? (await this.fetchToken(integration, deadline)).token : undefined;
      return await this.postSms(integration, sms, deadline, token, options.includeReplyExcerpt === true);
    } finally {
      deadline.dispose();
    }
  }

  /** Returns the time budget of one send: `timeoutMs`, or the caller's deadline when that is smaller. */
  budgetMs(deadlineMs: number | undefined): number {
    // A NaN deadline compares false, so it falls back to timeoutMs like a missing one.
    return deadlineMs !== undefined && deadlineMs < this.timeoutMs ? deadlineMs : this.timeoutMs;
  }

  /** True after `close`: every later request fails as `unavailable` without being sent. */
  get isClosed(): boolean {
    return this.closed;
  }

  /**
   * POSTs one SMS request, with the token header when `token` is given, and
   * reads the reply within `deadline`. It makes one attempt. With
   * `includeReplyExcerpt`, the result also carries the start of the reply body.
   *
   * @throws GatewayError as `send` does; `info.outcomeUnknown` is set when
   *   the request was written but no reply status arrived.
   */
  async postSms(
    integration: Integration,
    sms: SmsRequest,
    deadline: SendDeadline,
    token?: string,
    includeReplyExcerpt = false,
  ): Promise<SendResult> {
    const secrets = [integration.apiKey, integration.secretKey];
    let headers = sms.headers;
    if (token !== undefined) {
      // A copy with a null prototype, like the original, so each attempt can carry another token.
      headers = Object.assign(Object.create(null) as Record<string, string>, sms.headers);
      headers[integration.tokenKey] = token;
      secrets.push(token);
    }
    const exchange: Exchange = { integration, stage: "send", url: sms.url, headers, body: sms.body, secrets, requestId: deadline.requestId };
    this.assertCanStart(exchange, deadline);

    const sendTime = new Date();
    const reply = await this.recorded(exchange, () => this.post(exchange, deadline, this.maxResponseBytes));
    const fields =
      reply.bodyFailure === undefined
        ? readSendReply(reply.body, this.maxResponseBytes, integration, sendTime)
        : unreadSendReply(reply.bodyFailure, integration.idPath, sendTime);
    // A gateway may echo a credential anywhere in its reply, so every text taken from it is redacted.
    const forms = token === undefined ? credentialSecretForms(integration) : [...credentialSecretForms(integration), ...secretForms([token])];
    const warnings = fields.warnings.map((warning) => redactSecrets(warning, forms));
    fields.id = redactValue(fields.id, forms);
    const rawDate = redactValue(fields.rawDate, forms);
    if (rawDate !== fields.rawDate && fields.dateSource === "gateway") {
      // A date parsed from a secret would show it, as a numeric key read as epoch seconds does.
      fields.date = sendTime;
      fields.dateSource = "send_time";
      warnings.push(`the date at ${integration.datePath} repeats a credential, so the date is the send time`);
    }
    fields.rawDate = rawDate;
    if (this.log.isLevelEnabled("debug")) {
      this.log.debug(
        { requestId: deadline.requestId, integrationId: integration.id, to: maskPhone(sms.to), status: reply.status, warnings },
        "SMS accepted by the gateway",
      );
    }
    const result: SendResult = copyWith(fields, { warnings, httpStatus: reply.status, attempts: 1 });
    if (includeReplyExcerpt) {
      result.replyExcerpt = buildBodyExcerpt(reply.body.bytes, reply.body.complete, forms);
    }
    return result;
  }

  /**
   * Closes the pooled connections after the sends in progress finish.
   * Later sends fail as `unavailable`.
   */
  async close(): Promise<void> {
    this.closed = true;
    await this.agent.close();
  }

  /**
   * Fetches a token from `authUrl` with the credential headers, in one
   * request within `deadline`.
   *
   * @throws GatewayError at stage `auth` when the request fails or the reply
   *   has no usable token.
   */
  async fetchToken(integration: Integration, deadline: SendDeadline): Promise<FetchedToken> {
    const exchange: Exchange = {
      integration,
      stage: "auth",
      url: integration.authUrl,
      headers: credentialHeaders(integration),
      body: "{}",
      secrets: [integration.apiKey, integration.secretKey],
      requestId: deadline.requestId,
    };
    this.assertCanStart(exchange, deadline);
    return this.recorded(exchange, async () => {
      const reply = await this.post(exchange, deadline, this.maxResponseBytes);

      const result = readAuthReply(reply.body, integration.tokenKey, this.maxResponseBytes);
      if ("token" in result) {
        return result;
      }
      const context = requestContext(exchange);
      const excerpt = authReplyExcerpt(reply.body, context.secretForms);
      throw this.logged(exchange, invalidAuthReplyError(context, reply.status, excerpt, result.problem));
    });
  }

  /**
   * Checks `auth_url` and `base_url` with the SSRF guard before any request
   * of a send, so that a blocked URL opens no socket. Call it once per send,
   * before the first request.
   *
   * @throws OutboundBlockedError when a URL is blocked.
   * @throws GatewayError when a host name does not resolve, or the send's
   *   deadline passes while resolving.
   */
  async checkOutbound(integration: Integration, deadline: SendDeadline): Promise<void> {
    for (const target of outboundTargets(integration)) {
      try {
        await this.outbound.checkUrl(target.field, target.url, deadline.signal);
      } catch (error) {
        // Built only here, because every send runs this check and nearly all pass it.
        const exchange: Exchange = {
          integration,
          stage: target.stage,
          url: target.url,
          headers: {},
          body: "",
          secrets: [integration.apiKey, integration.secretKey],
          requestId: deadline.requestId,
        };
        if (error instanceof OutboundBlockedError) {
          throw this.blocked(exchange, error);
        }
        const outcome = { ended: deadline.ended, budgetMs: deadline.budgetMs, httpStatus: 0, attempts: 0, requestWritten: false };
        throw this.logged(exchange, transportError(requestContext(exchange), error, outcome));
      }
    }
  }

  /**
   * Runs one request of a send and counts it in the metrics: an SMS request
   * as a webhook attempt with its duration, a token request as a token fetch.
   */
  private async recorded<T>(exchange: Exchange, request: () => Promise<T>): Promise<T> {
    const startedAt = performance.now();
    let outcome: GatewayOutcome = "ok";
    try {
      return await request();
    } catch (error) {
      outcome = error instanceof GatewayError ? error.info.failure : "unavailable";
      throw error;
    } finally {
      const integrationId = exchange.integration.id;
      if (exchange.stage === "send") {
        this.metrics.webhookAttempt(integrationId, outcome, (performance.now() - startedAt) / 1000);
      } else {
        this.metrics.tokenFetch(integrationId, outcome);
      }
    }
  }

  /** Logs a request that the SSRF guard blocked and returns the error for throwing. */
  private blocked(exchange: Exchange, error: OutboundBlockedError): OutboundBlockedError {
    this.metrics.ssrfRefusal(exchange.integration.id, error.reason);
    // The host name is the operator's, but it may carry a key.
    const forms = credentialSecretForms(exchange.integration);
    const redactedError = error.redacted((text) => redactSecrets(text, forms));
    const { field, reason, metadata } = redactedError;
    this.log.warn(
      { requestId: exchange.requestId, integrationId: exchange.integration.id, field, reason, ...metadata },
      "SSRF guard blocked a gateway request",
    );
    return redactedError;
  }

  /**
   * Builds the error of a request at `stage` that did not run because
   * `deadline` ended (timed out or canceled) first.
   */
  endedError(integration: Integration, stage: GatewayStage, deadline: SendDeadline): GatewayError {
    const exchange: Exchange = {
      integration,
      stage,
      url: stage === "auth" ? integration.authUrl : integration.baseUrl,
      headers: {},
      body: "",
      secrets: [integration.apiKey, integration.secretKey],
      requestId: deadline.requestId,
    };
    return transportError(requestContext(exchange), deadline.signal.reason, {
      ended: deadline.ended,
      budgetMs: deadline.budgetMs,
      httpStatus: 0,
      attempts: 0,
      requestWritten: false,
    });
  }

  /** Throws the error of a request that must not start: the dispatcher is closed, or the deadline has passed. */
  private assertCanStart(exchange: Exchange, deadline: SendDeadline): void {
    if (this.closed) {
      throw closedError(requestContext(exchange));
    }
    if (deadline.ended !== undefined) {
      throw this.endedError(exchange.integration, exchange.stage, deadline);
    }
  }

  /**
   * POSTs one request and returns its 2xx reply with the body read up to
   * `readLimit` bytes.
   *
   * A 2xx status means the gateway accepted the SMS, so when its body then
   * fails to arrive (timeout, reset, cancel) the reply is still returned, with
   * `bodyFailure` set. On the token request the same failure is an error,
   * because the token is in the body.
   *
   * @throws GatewayError for any other status, or for a timeout, a cancel or
   *   a connection failure before the status arrived.
   */
  private async post(exchange: Exchange, deadline: SendDeadline, readLimit: number): Promise<AcceptedReply> {
    const startedAt = performance.now();
    const tracker = new WriteTracker(this.agent);
    let response: UndiciDispatcher.ResponseData;
    try {
      const remainingMs = deadline.remainingMs();
      const url = new URL(exchange.url);
      // undici's top-level request() copies its options with a leading spread, which costs a new
      // hidden class per request on Node 20 (see copyWith), so the tracker's request() gets them.
      response = await tracker.request({
        origin: url.origin,
        path: url.pathname + url.search,
        method: "POST",
        headers: exchange.headers,
        body: exchange.body,
        signal: deadline.signal,
        headersTimeout: remainingMs + UNDICI_TIMER_SLACK_MS,
        bodyTimeout: remainingMs + UNDICI_TIMER_SLACK_MS,
      });
    } catch (error) {
      if (error instanceof OutboundBlockedError) {
        // The connector checked the address again and refused to connect.
        throw this.blocked(exchange, error.withField(outboundField(exchange.stage)));
      }
      throw this.logged(exchange, this.transportFailure(exchange, deadline, error, 0, tracker.writeStarted));
    }

    const status = response.statusCode;
    if (this.log.isLevelEnabled("debug")) {
      const durationMs = Math.round(performance.now() - startedAt);
      const fields = { requestId: exchange.requestId, integrationId: exchange.integration.id, stage: exchange.stage, status, durationMs };
      this.log.debug(fields, "gateway replied");
    }

    if (status >= 200 && status < 300) {
      try {
        return { status, body: await readBodyUnlessTooLong(response, readLimit) };
      } catch (error) {
        if (exchange.stage === "auth") {
          throw this.logged(exchange, this.transportFailure(exchange, deadline, error, status, true));
        }
        return { status, body: UNREAD_BODY, bodyFailure: describeBodyFailure(error, deadline.ended) };
      }
    }

    // The status decides the failure, so a body that stops arriving only shortens the excerpt.
    // NOTE: when the body stalls, reading the excerpt takes the rest of the attempt's time, which
    // without an idempotency key is the whole send. A 503 whose body trickles then gets no retry.
    const context = requestContext(exchange);
    const start = await readArrivedBodyStart(response.body, excerptReadBytes(context.secretForms));
    const excerpt: BodyExcerpt = start.failed
      ? buildArrivedBodyExcerpt(start.bytes, context.secretForms)
      : buildBodyExcerpt(start.bytes, start.complete, context.secretForms);
    throw this.logged(exchange, statusError(context, status, response.headers, excerpt, Date.now()));
  }

  private transportFailure(
    exchange: Exchange,
    deadline: SendDeadline,
    error: unknown,
    httpStatus: number,
    requestWritten: boolean,
  ): GatewayError {
    const outcome = { ended: deadline.ended, budgetMs: deadline.budgetMs, httpStatus, attempts: 1, requestWritten };
    return transportError(requestContext(exchange), error, outcome);
  }

  /** Logs a gateway failure without secrets and returns it for throwing. */
  private logged(exchange: Exchange, error: GatewayError): GatewayError {
    const { failure, httpStatus } = error.info;
    this.log.debug(
      { requestId: exchange.requestId, integrationId: exchange.integration.id, stage: exchange.stage, failure, status: httpStatus },
      "gateway request failed",
    );
    return error;
  }
}

/**
 * Time added to undici's header and body timeouts, so that the send's own
 * deadline, an exact timer, always ends a request first. undici times them on
 * a clock that ticks about every 500 ms and counts from the tick before the
 * request, so a timeout set to the time left could cut the request up to a
 * tick early.
 */
const UNDICI_TIMER_SLACK_MS = 1_000;

/** The secret forms of an integration's credentials, with the credentials that they were built from. */
interface CredentialForms {
  apiKey: string;
  secretKey: string;
  forms: readonly string[];
}

const credentialFormsCache = new WeakMap<Integration, CredentialForms>();

/**
 * Returns `secretForms` of the integration's API key and secret key, built
 * once per integration object and built again when either key changed.
 */
function credentialSecretForms(integration: Integration): readonly string[] {
  const { apiKey, secretKey } = integration;
  const cached = credentialFormsCache.get(integration);
  if (cached !== undefined && cached.apiKey === apiKey && cached.secretKey === secretKey) {
    return cached.forms;
  }
  const forms = secretForms([apiKey, secretKey]);
  credentialFormsCache.set(integration, { apiKey, secretKey, forms });
  return forms;
}

function requestContext(exchange: Exchange): RequestContext {
  return {
    integrationId: exchange.integration.id,
    stage: exchange.stage,
    url: exchange.url,
    secretForms: secretForms(exchange.secrets),
    usesToken: exchange.integration.authenticateByToken,
  };
}
