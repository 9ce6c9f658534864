import { Code, ConnectError } from "@connectrpc/connect";
import {
  BadRequestSchema,
  ErrorInfoSchema,
  GatewayErrorSchema,
  GatewayStage,
  RetryInfoSchema,
  type FieldViolation,
} from "../gen/smsgateway/v1/errors_pb.js";
import { element, facts } from "./dom.js";

/** Returns the gRPC name of a code, for example `INVALID_ARGUMENT`, as the service's docs and logs spell it. */
export function codeName(code: Code): string {
  return (Code[code] ?? "UNKNOWN").replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
}

/** A failed call, rendered, with the invalid fields so the form can mark them. */
export interface RenderedError {
  view: HTMLElement;
  violations: FieldViolation[];
}

/**
 * Renders an RPC error: its code and message, and every detail the service
 * attaches (invalid fields, the gateway's status and reply excerpt, the
 * error reason and the retry delay).
 */
export function renderError(thrown: unknown): RenderedError {
  const error = ConnectError.from(thrown);
  const view = element("div", { class: "error-view" });
  view.append(element("p", { class: "headline" }, element("strong", { class: "code" }, codeName(error.code)), " ", error.rawMessage));

  // The SSRF guard's PERMISSION_DENIED carries an ErrorInfo, and a missing scope does not.
  const callerDenied = error.code === Code.PermissionDenied && error.findDetails(ErrorInfoSchema).length === 0;
  if (error.code === Code.Unauthenticated || callerDenied) {
    view.append(element("p", {}, "Enter a service API key that allows this call in the box at the top of the page."));
  }

  const violations = error.findDetails(BadRequestSchema).flatMap((detail) => detail.fieldViolations);
  if (violations.length > 0) {
    view.append(violationList(violations));
  }

  for (const gateway of error.findDetails(GatewayErrorSchema)) {
    view.append(element("h3", {}, "Gateway reply"));
    view.append(
      facts([
        ["Step", gateway.stage === GatewayStage.AUTH ? "token request (auth URL)" : "SMS request (base URL)"],
        ["HTTP status", gateway.httpStatus === 0 ? "no reply" : String(gateway.httpStatus)],
        ["Attempts", gateway.attempts === 0 ? "" : String(gateway.attempts)],
        ["Outcome", gateway.outcomeUnknown ? "unknown: the gateway may have sent the SMS; retry only with the same idempotency key" : ""],
      ]),
    );
    if (gateway.bodyExcerpt !== "") {
      const truncated = gateway.bodyTruncated ? " (first 1 KiB)" : "";
      view.append(element("p", { class: "hint" }, `Reply body${truncated}:`), element("pre", { class: "excerpt" }, gateway.bodyExcerpt));
    }
  }

  for (const info of error.findDetails(ErrorInfoSchema)) {
    const metadata = Object.entries(info.metadata).map(([key, value]) => `${key}=${value}`);
    view.append(facts([["Reason", info.reason], ["Details", metadata.join(", ")]]));
  }

  const retryDelays = error.findDetails(RetryInfoSchema).map((info) => info.retryDelay);
  const retryAfter = retryDelays[0] === undefined ? error.metadata.get("retry-after") : String(Number(retryDelays[0].seconds) + retryDelays[0].nanos / 1e9);
  if (retryAfter !== null && retryAfter !== "") {
    view.append(facts([["Retry after", `${retryAfter} s`]]));
  }

  return { view, violations };
}

/** Renders problems found in the form before anything was sent. */
export function renderLocalProblems(violations: readonly FieldViolation[]): HTMLElement {
  return element(
    "div",
    { class: "error-view" },
    element("p", { class: "headline" }, element("strong", { class: "code" }, "NOT SENT"), " Fix the fields below."),
    violationList(violations),
  );
}

function violationList(violations: readonly FieldViolation[]): HTMLUListElement {
  const list = element("ul", { class: "violations" });
  for (const violation of violations) {
    list.append(element("li", {}, element("code", {}, violation.field), `: ${violation.description}`));
  }
  return list;
}

/**
 * Marks the form controls that the violations name: `aria-invalid`, and the
 * description right under the control, linked by `aria-describedby` so
 * screen readers read it with the field. `prefix` is the request path of the
 * form's message (`integration.`), stripped before matching control names.
 */
export function markInvalidFields(form: HTMLFormElement, violations: readonly FieldViolation[], prefix: string): void {
  clearInvalidFields(form);
  for (const violation of violations) {
    const path = violation.field.startsWith(prefix) ? violation.field.slice(prefix.length) : violation.field;
    const control = form.elements.namedItem(path.split(".")[0] ?? "");
    if (!(control instanceof HTMLInputElement || control instanceof HTMLTextAreaElement || control instanceof HTMLSelectElement)) {
      continue;
    }

    const messageId = `${control.id}-error`;
    const existing = document.getElementById(messageId);
    if (existing !== null) {
      existing.append(` ${violation.description}`);
      continue;
    }
    control.closest(".field")?.append(element("p", { class: "field-error", id: messageId }, violation.description));
    control.setAttribute("aria-invalid", "true");
    control.setAttribute("aria-describedby", [control.getAttribute("aria-describedby"), messageId].filter(Boolean).join(" "));
  }
  // The first marked control in page order, whatever order the service listed the fields in.
  form.querySelector<HTMLElement>('[aria-invalid="true"]')?.focus();
}

/** Removes the marks of `markInvalidFields`. */
export function clearInvalidFields(form: HTMLFormElement): void {
  for (const message of form.querySelectorAll(".field-error")) {
    message.remove();
  }
  for (const control of form.querySelectorAll("[aria-invalid]")) {
    control.removeAttribute("aria-invalid");
    const described = (control.getAttribute("aria-describedby") ?? "").split(" ").filter((id) => id !== `${control.id}-error`);
    if (described.length > 0) {
      control.setAttribute("aria-describedby", described.join(" "));
    } else {
      control.removeAttribute("aria-describedby");
    }
  }
}
