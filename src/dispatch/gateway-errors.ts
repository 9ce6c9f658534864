import type { IncomingHttpHeaders } from "node:http";
import { errors } from "undici";

import { GatewayError, type GatewayFailure, type GatewayStage } from "../errors.js";
import { parseRetryAfter } from "./retry-after.js";
import { redactSecrets, redactValue, type BodyExcerpt } from "./redact.js";
import type { DeadlineEnd } from "./send-deadline.js";

/** Request details for gateway error messages: the integration, the request and the secrets to hide. */
export interface RequestContext {
  integrationId: string;
  stage: GatewayStage;
  /** The request URL. Messages show only its origin. */
  url: string;
  /** Secret forms from `secretForms`, replaced in the parts of a message that come from the gateway or the URL. */
  secretForms: readonly string[];
  /** True when the SMS request carries a token from `auth_url`. */
  usesToken: boolean;
}

/** Maximum number of characters of gateway text that a message quotes. */
const MAX_QUOTED_CHARS = 200;

/** Error codes that mean our request was invalid, which is a bug and not a gateway failure. */
const BUG_CODES = new Set(["UND_ERR_INVALID_ARG", "UND_ERR_INVALID_RETURN_VALUE", "UND_ERR_NOT_SUPPORTED"]);

const TIMEOUT_CODES = new Set([
  "UND_ERR_CONNECT_TIMEOUT",
  "UND_ERR_HEADERS_TIMEOUT",
  "UND_ERR_BODY_TIMEOUT",
  "ETIMEDOUT",
]);

/** Name of undici's error for a reply that breaks HTTP/1.1, which stands for its code when it has none. */
const PARSER_ERROR_NAME = "HTTPParserError";

const CODE_DESCRIPTIONS: Record<string, string> = {
  ECONNREFUSED: "connection refused",
  ECONNRESET: "connection reset",
  EPIPE: "connection closed while sending",
  ENOTFOUND: "host name not found",
  EAI_AGAIN: "temporary DNS failure",
  EHOSTUNREACH: "host unreachable",
  ENETUNREACH: "network unreachable",
  UND_ERR_SOCKET: "connection closed by the gateway",
  UND_ERR_HEADERS_OVERFLOW: "oversized reply headers",
  UND_ERR_RES_CONTENT_LENGTH_MISMATCH: "a reply length not matching its Content-Length",
  [PARSER_ERROR_NAME]: "an invalid HTTP reply",
};

/**
 * Maps the HTTP status of a failed reply (not 2xx) to the failure it means.
 * A 408 is `unavailable`, as a 5xx is, and not `rejected`, because the
 * gateway did not process the request, so the request itself may be fine.
 */
export function failureForStatus(status: number): GatewayFailure {
  if (status === 408) {
    return "unavailable";
  }
  if (status === 401 || status === 403) {
    return "credentials_refused";
  }
  if (status === 429) {
    return "rate_limited";
  }
  if (status >= 300 && status < 400) {
    return "redirected";
  }
  if (status >= 400 && status < 500) {
    return "rejected";
  }
  return "unavailable";
}

/**
 * Builds the error for a reply whose status is not 2xx.
 *
 * `Retry-After` is read on 429 and 503, the statuses that RFC 9110 pairs with it.
 */
export function statusError(
  context: RequestContext,
  status: number,
  headers: IncomingHttpHeaders,
  excerpt: BodyExcerpt,
  nowMs: number,
): GatewayError {
  const failure = failureForStatus(status);
  const retryAfterSeconds =
    status === 429 || status === 503 ? retryAfterWithoutSecrets(headers["retry-after"], context.secretForms, nowMs) : undefined;
  const message = statusMessage(context, failure, status, headers, retryAfterSeconds);

  return new GatewayError(message, {
    failure,
    stage: context.stage,
    httpStatus: status,
    bodyExcerpt: excerpt.text,
    bodyTruncated: excerpt.truncated,
    attempts: 1,
    ...(retryAfterSeconds === undefined ? {} : { retryAfterSeconds }),
  });
}

function statusMessage(
  context: RequestContext,
  failure: GatewayFailure,
  status: number,
  headers: IncomingHttpHeaders,
  retryAfterSeconds: number | undefined,
): string {
  const request = `${requestName(context)} of integration "${context.integrationId}"`;
  switch (failure) {
    case "credentials_refused":
      return (
        `The gateway refused the credentials in ${request} with HTTP ${status}. ` +
        `Check api_key, secret_key and their header names${context.usesToken ? ", and token_key" : ""}.`
      );
    case "rate_limited":
      return `The gateway rate-limited ${request} with HTTP ${status}. ${retryAdvice(retryAfterSeconds)}.`;
    case "redirected":
      return (
        `The gateway replied to ${request} with a redirect, HTTP ${status} ` +
        `${describeLocation(headers.location, context.secretForms)}, and redirects are not followed. ` +
        `Set ${urlField(context)} to the final URL.`
      );
    case "rejected":
      if (status === 404 || status === 405) {
        // These statuses are about the URL or the method, not about the request's fields.
        return (
          `The gateway rejected ${request} with HTTP ${status}, so it takes no POST at that URL. ` +
          `Check the path of ${urlField(context)}.`
        );
      }
      return (
        `The gateway rejected ${request} with HTTP ${status}. ` +
        "Check the request fields against the gateway's reply body."
      );
    default:
      return (
        `The gateway failed ${request} with HTTP ${status}. ` +
        `${retryAdvice(retryAfterSeconds)}, and check the gateway's status if the failure persists.`
      );
  }
}

/**
 * Reads `Retry-After` as `parseRetryAfter` does, but ignores a value that echoes a secret, such as
 * a numeric API key. The seconds reach the caller in the `retry-after` header and in `RetryInfo`,
 * which cannot carry `[REDACTED]`.
 */
function retryAfterWithoutSecrets(header: string | string[] | undefined, forms: readonly string[], nowMs: number): number | undefined {
  const seconds = parseRetryAfter(header, nowMs);
  if (seconds === undefined) {
    return undefined;
  }
  const raw = (Array.isArray(header) ? header[0] : header)?.trim() ?? "";
  const echoesSecret = redactValue(raw, forms) !== raw || redactValue(String(seconds), forms) !== String(seconds);
  return echoesSecret ? undefined : seconds;
}

/** Returns "Retry later", or "Retry after N seconds" with the wait that the gateway's Retry-After requested. */
function retryAdvice(retryAfterSeconds: number | undefined): string {
  if (retryAfterSeconds === undefined) {
    return "Retry later";
  }
  return `Retry after ${retryAfterSeconds} ${retryAfterSeconds === 1 ? "second" : "seconds"}`;
}

/** Builds the error for a 2xx auth reply without a usable token. */
export function invalidAuthReplyError(
  context: RequestContext,
  status: number,
  excerpt: BodyExcerpt,
  problem: string,
): GatewayError {
  const message =
    `The token reply from auth_url of integration "${context.integrationId}" (HTTP ${status}) ` +
    `${redactSecrets(problem, context.secretForms)}. Check token_key against the reply body.`;
  return new GatewayError(message, {
    failure: "invalid_auth_reply",
    stage: context.stage,
    httpStatus: status,
    bodyExcerpt: excerpt.text,
    bodyTruncated: excerpt.truncated,
    attempts: 1,
  });
}

/** The state of a request that got no complete reply. */
export interface TransportOutcome {
  /** Reason the send's own abort signal fired, if it did. */
  ended: DeadlineEnd | undefined;
  /** Total time allowed for the send, in milliseconds. */
  budgetMs: number;
  /** Status of the reply whose body failed, 0 when no reply arrived. */
  httpStatus: number;
  /** Requests sent for this stage, 0 when the send ended before the request. */
  attempts: number;
  /** True when undici began writing the request to a socket before the failure. */
  requestWritten: boolean;
}

/** Ends the message of an SMS request that may have reached the gateway. */
export const OUTCOME_UNKNOWN_ADVICE = "The gateway may have received the request and sent the SMS. Before sending it again, check with the gateway.";

/**
 * Builds the error for a request that got no complete reply: the deadline
 * passed, the caller canceled, the shutdown cut it, or the connection failed.
 *
 * When the send's own abort signal fired, its reason decides the failure,
 * whatever error undici raised for the abort.
 *
 * @throws the given error itself when it is not a gateway failure but a bug,
 *   such as an invalid header that undici refused to send.
 */
export function transportError(context: RequestContext, error: unknown, outcome: TransportOutcome): GatewayError {
  const code = errorCode(error);
  const request = `${requestName(context)} of integration "${context.integrationId}"`;
  // A 2xx whose body failed is a send, so only a request without a reply status leaves the outcome open.
  const outcomeUnknown = context.stage === "send" && outcome.requestWritten && outcome.httpStatus === 0;
  const unknownAdvice = outcomeUnknown ? ` ${OUTCOME_UNKNOWN_ADVICE}` : "";
  const info = {
    stage: context.stage,
    httpStatus: outcome.httpStatus,
    bodyExcerpt: "",
    bodyTruncated: false,
    attempts: outcome.attempts,
    ...(outcomeUnknown ? { outcomeUnknown } : {}),
  };

  if (outcome.ended === "canceled" || outcome.ended === "shutdown") {
    const canceledBy = outcome.ended === "canceled" ? "The caller canceled" : "The service was shutting down and cut";
    const message = `${canceledBy} ${request} before the gateway replied.${unknownAdvice}`;
    return new GatewayError(message, { failure: "canceled", ...info }, { cause: error });
  }
  if (outcome.ended === "timeout" && outcome.budgetMs <= 0 && !outcome.requestWritten) {
    const message = `The caller's deadline left no time for ${request}, so nothing was sent. Allow a longer deadline.`;
    return new GatewayError(message, { failure: "timeout", ...info, attempts: 0 }, { cause: error });
  }
  if (outcome.ended === "timeout" || (code !== undefined && TIMEOUT_CODES.has(code))) {
    const message =
      `The gateway did not complete ${request} within ${outcome.budgetMs} ms.${unknownAdvice} ` +
      "Check the gateway's health, or allow a longer deadline.";
    return new GatewayError(message, { failure: "timeout", ...info }, { cause: error });
  }
  if (code === undefined || BUG_CODES.has(code) || code.startsWith("ERR_INVALID")) {
    throw error;
  }
  if (code === "UND_ERR_CLOSED" || code === "UND_ERR_DESTROYED") {
    // NOTE: undici also fails a request that it already wrote with these codes when its dispatcher is
    // destroyed, and then "not sent" with 0 attempts would be wrong (a send gives its rate token back on
    // 0 attempts). The service only closes its agent, which lets requests in progress finish first.
    return closedError(context, { cause: error });
  }

  const description =
    CODE_DESCRIPTIONS[code] ?? (code.startsWith("HPE_") ? "an invalid HTTP reply" : "a connection error");
  // The URL is the operator's, but a host name may carry a key, so only the origin is shown, redacted.
  const origin = redactSecrets(originOf(context.url), context.secretForms);
  const message =
    `${capitalize(request)} to ${origin} failed with ${description} (${code}).${unknownAdvice} ` +
    `Check ${urlField(context)} and that the gateway is running.`;
  return new GatewayError(message, { failure: "unavailable", ...info }, { cause: error });
}

/** Builds the error for a send after `Dispatcher.close`, which sent nothing. */
export function closedError(context: RequestContext, options?: { cause?: unknown }): GatewayError {
  const message =
    `${capitalize(requestName(context))} of integration "${context.integrationId}" was not sent ` +
    "because the dispatcher is closed, as it is during shutdown.";
  const info = {
    failure: "unavailable" as const,
    stage: context.stage,
    httpStatus: 0,
    bodyExcerpt: "",
    bodyTruncated: false,
    attempts: 0,
  };
  return new GatewayError(message, info, options);
}

function capitalize(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

function requestName(context: RequestContext): string {
  return context.stage === "auth" ? "the token request to auth_url" : "the SMS request";
}

function urlField(context: RequestContext): string {
  return context.stage === "auth" ? "auth_url" : "base_url";
}

function describeLocation(location: string | string[] | undefined, secretForms: readonly string[]): string {
  const raw = Array.isArray(location) ? location[0] : location;
  if (raw === undefined || raw === "") {
    return "without a Location header";
  }
  // Redact before shortening, so that the cut cannot leave part of a secret.
  const value = redactSecrets(raw, secretForms);
  const quoted = value.length > MAX_QUOTED_CHARS ? `${value.slice(0, MAX_QUOTED_CHARS)}...` : value;
  return `to ${JSON.stringify(quoted)}`;
}

function errorCode(error: unknown): string | undefined {
  if (typeof error !== "object" || error === null) {
    return undefined;
  }
  const code = (error as { code?: unknown }).code;
  if (typeof code === "string") {
    return code;
  }
  // undici's own checks of a reply, such as of its Content-Length, throw a parser error without a code.
  return error instanceof errors.HTTPParserError ? PARSER_ERROR_NAME : undefined;
}

function originOf(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return "an invalid URL";
  }
}
