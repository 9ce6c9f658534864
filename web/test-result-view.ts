import { Code, ConnectError } from "@connectrpc/connect";
import { ErrorInfoSchema, GatewayErrorSchema, RetryInfoSchema } from "../gen/smsgateway/v1/errors_pb.js";
import {
  CredentialKind,
  OutboundVerdict,
  type OutboundCheck,
  type PreparedRequest,
  type TestIntegrationResponse,
  type TestSendFailure,
  type TestSendResult,
} from "../gen/smsgateway/v1/integration_service_pb.js";
import { element, facts } from "./dom.js";
import { codeName, renderError } from "./error-view.js";
import { renderSent } from "./send-form.js";

/**
 * Renders the result of TestIntegration: the requests the service prepared,
 * the SSRF guard's verdict on each URL, and the test SMS's outcome when one
 * was sent.
 */
export function renderTestResult(response: TestIntegrationResponse): HTMLElement {
  const view = element("div", { class: "test-result" });

  view.append(element("h3", {}, "Prepared requests"));
  if (response.placeholderFields.length > 0) {
    view.append(
      element(
        "p",
        { class: "hint" },
        `Placeholders stand in for ${response.placeholderFields.join(" and ")}. Fill in the test's recipient and text to see the real request.`,
      ),
    );
  }
  if (response.tokenRequest !== undefined) {
    view.append(renderRequest("Token request", response.tokenRequest));
  }
  if (response.smsRequest !== undefined) {
    view.append(renderRequest("SMS request", response.smsRequest));
  }

  view.append(element("h3", {}, "SSRF guard"), element("ul", { class: "checks" }, ...response.outboundChecks.map(renderCheck)));

  if (response.sendResult !== undefined) {
    view.append(element("h3", {}, "Test SMS"), renderSendResult(response.sendResult));
  }
  return view;
}

/** Renders one request as its method and URL, its headers, and its body. */
function renderRequest(title: string, request: PreparedRequest): HTMLElement {
  const headers = element("ul", { class: "headers" });
  for (const header of request.headers) {
    const item = element("li", {}, element("code", {}, `${header.name}: ${header.value}`));
    if (header.credential !== CredentialKind.UNSPECIFIED) {
      item.append(" ", element("span", { class: "badge" }, header.credential === CredentialKind.TOKEN ? "token, fetched at send time" : "masked"));
    }
    headers.append(item);
  }

  return element(
    "div",
    { class: "prepared-request" },
    element("h4", {}, title),
    element("p", { class: "request-line" }, element("code", {}, `${request.method} ${request.url}`)),
    headers,
    element("pre", { class: "excerpt" }, request.body),
  );
}

/** Renders the verdict on one URL, with what the operator can do about a blocked one. */
function renderCheck(check: OutboundCheck): HTMLElement {
  const field = element("code", {}, check.field);
  switch (check.verdict) {
    case OutboundVerdict.ALLOWED:
      return element("li", { class: "allowed" }, field, ` allowed: ${check.addresses.join(", ")}`);
    case OutboundVerdict.BLOCKED: {
      const metadata = Object.entries(check.metadata).map(([key, value]) => `${key}=${value}`);
      return element("li", { class: "blocked" }, field, ` blocked (${check.reason}, ${metadata.join(", ")}): ${check.description}`);
    }
    default:
      return element("li", { class: "blocked" }, field, ` not resolved (${check.metadata.code ?? ""}): ${check.description}`);
  }
}

/** Renders the outcome of the test SMS, a failure as the send form shows the same error. */
function renderSendResult(result: TestSendResult): HTMLElement {
  const view = element("div", { class: "outcome" });
  if (result.failure !== undefined) {
    view.classList.add("failure");
    view.append(renderError(failureAsError(result, result.failure)).view);
    return view;
  }

  view.classList.add(result.warnings.length > 0 || result.id === "" ? "warning" : "success");
  view.append(renderSent(result));
  if (result.replyExcerpt !== "") {
    const truncated = result.replyTruncated ? " (first 1 KiB)" : "";
    view.append(element("p", { class: "hint" }, `Reply body${truncated}:`), element("pre", { class: "excerpt" }, result.replyExcerpt));
  }
  return view;
}

/** Rebuilds the error that SendSms would have raised, so it renders like every other RPC error. */
function failureAsError(result: TestSendResult, failure: TestSendFailure): ConnectError {
  const details: ConstructorParameters<typeof ConnectError>[3] = [];
  if (failure.stage !== 0) {
    details.push({
      desc: GatewayErrorSchema,
      value: {
        stage: failure.stage,
        httpStatus: result.gatewayStatus,
        bodyExcerpt: result.replyExcerpt,
        bodyTruncated: result.replyTruncated,
        attempts: result.attempts,
      },
    });
  }
  if (failure.errorInfo !== undefined) {
    details.push({ desc: ErrorInfoSchema, value: failure.errorInfo });
  }
  if (failure.retryDelay !== undefined) {
    details.push({ desc: RetryInfoSchema, value: { retryDelay: failure.retryDelay } });
  }
  return new ConnectError(failure.message, codeFromName(failure.code), undefined, details);
}

/** Returns the code whose gRPC name is `name` (`FAILED_PRECONDITION`), or Unknown. */
function codeFromName(name: string): Code {
  for (const value of Object.values(Code)) {
    if (typeof value === "number" && codeName(value) === name) {
      return value;
    }
  }
  return Code.Unknown;
}
