import { create, fromJson, type JsonValue } from "@bufbuild/protobuf";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { FieldViolationSchema } from "../gen/smsgateway/v1/errors_pb.js";
import type { Integration } from "../gen/smsgateway/v1/integration_pb.js";
import { DateSource, PassthroughSchema, type Passthrough, type SendSmsResponse } from "../gen/smsgateway/v1/sms_service_pb.js";
import { smsClient } from "./api.js";
import { byId, element, facts } from "./dom.js";
import { clearInvalidFields, codeName, markInvalidFields, renderError, renderLocalProblems } from "./error-view.js";

/** The send form. */
export interface SendForm {
  /** Offers these integrations as suggestions for the integration id, and fills in the first when the field is empty. */
  setIntegrations(integrations: readonly Integration[]): void;
  /**
   * Clears the suggestions and shows why, after listing integrations failed.
   * The id can still be typed, because an API key with only `sms:send` may
   * send but not list.
   */
  listFailed(error: unknown): void;
  /** Picks an integration and moves to the form. */
  choose(integrationId: string): void;
}

/** Connects the "Send an SMS" section. */
export function createSendForm(): SendForm {
  const form = byId("send-form", HTMLFormElement);
  const integrationId = byId("s-integration_id", HTMLInputElement);
  const integrationOptions = byId("s-integration_options", HTMLDataListElement);
  const integrationHint = byId("s-integration_id-hint", HTMLParagraphElement);
  const to = byId("s-to", HTMLInputElement);
  const content = byId("s-content", HTMLTextAreaElement);
  const sender = byId("s-sender", HTMLInputElement);
  const passthrough = byId("s-passthrough", HTMLTextAreaElement);
  const idempotencyKey = byId("s-idempotency_key", HTMLInputElement);
  const sendButton = byId("send-sms", HTMLButtonElement);
  const outcome = byId("send-outcome", HTMLDivElement);

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    clearInvalidFields(form);
    outcome.replaceChildren();
    outcome.className = "outcome";

    const parsed = parsePassthrough(passthrough.value);
    if (typeof parsed === "string") {
      const violations = [create(FieldViolationSchema, { field: "passthrough", description: parsed })];
      showError(renderLocalProblems(violations));
      markInvalidFields(form, violations, "");
      return;
    }

    sendButton.disabled = true;
    void smsClient
      .sendSms({
        integrationId: integrationId.value.trim(),
        to: to.value,
        content: content.value,
        sender: sender.value === "" ? undefined : sender.value,
        passthrough: parsed,
        idempotencyKey: idempotencyKey.value,
      })
      .then(
        (response) => {
          outcome.classList.add(response.warnings.length > 0 || response.id === "" ? "warning" : "success");
          outcome.replaceChildren(renderSent(response));
        },
        (error: unknown) => {
          const rendered = renderError(error);
          showError(rendered.view);
          markInvalidFields(form, rendered.violations, "");
        },
      )
      .finally(() => {
        sendButton.disabled = false;
      });
  });

  const showError = (view: HTMLElement) => {
    outcome.classList.add("failure");
    outcome.replaceChildren(view);
  };

  // Ids of the last list, so that an id taken from it and since deleted is replaced, while a typed one stays.
  let listedIds = new Set<string>();

  return {
    setIntegrations(integrations) {
      integrationOptions.replaceChildren(...integrations.map((integration) => element("option", { value: integration.id }, integration.displayName)));
      integrationHint.textContent = integrations.length === 0 ? "Create an integration above before sending." : "Pick an integration or type its id.";
      const ids = new Set(integrations.map((integration) => integration.id));
      if (listedIds.has(integrationId.value) && !ids.has(integrationId.value)) {
        integrationId.value = "";
      }
      listedIds = ids;
      const first = integrations[0];
      if (integrationId.value === "" && first !== undefined) {
        integrationId.value = first.id;
      }
    },
    listFailed(error) {
      const { code } = ConnectError.from(error);
      integrationOptions.replaceChildren();
      integrationHint.textContent =
        code === Code.PermissionDenied
          ? "This API key may not list integrations (PERMISSION_DENIED), so type the id of the integration to send through."
          : `Integrations could not be listed (${codeName(code)}), so type the id of the integration to send through.`;
    },
    choose(id) {
      integrationId.value = id;
      form.scrollIntoView({ block: "start" });
      to.focus();
    },
  };
}

/**
 * Parses the passthrough box: empty means none, otherwise the JSON form of
 * `smsgateway.v1.Passthrough`. Returns the problem as text when it is not.
 */
export function parsePassthrough(text: string): Passthrough | undefined | string {
  if (text.trim() === "") {
    return undefined;
  }
  let json: JsonValue;
  try {
    json = JSON.parse(text) as JsonValue;
  } catch (error) {
    return `is not valid JSON (${error instanceof Error ? error.message : String(error)})`;
  }
  try {
    return fromJson(PassthroughSchema, json);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    return `must look like {"body": {...}, "headers": {...}, "query": {...}}: ${reason}`;
  }
}

/** The fields of an accepted send that `renderSent` shows, as `SendSmsResponse` and a test send's result both have them. */
export type SentFields = Pick<SendSmsResponse, "id" | "date" | "rawDate" | "dateSource" | "gatewayStatus" | "attempts" | "warnings"> & {
  replayed?: boolean;
};

/** Renders an SMS that the gateway accepted: its id, date, status and any warnings. */
export function renderSent(response: SentFields): HTMLElement {
  const view = element("div", { class: "sent-view" });
  view.append(element("p", { class: "headline" }, element("strong", {}, response.replayed === true ? "Sent earlier (replayed)" : "Sent")));
  view.append(
    facts([
      ["Message id", response.id === "" ? "none in the gateway reply" : response.id],
      ["Date", response.date === undefined ? "" : timestampDate(response.date).toISOString()],
      ["Date source", response.dateSource === DateSource.GATEWAY ? "gateway reply" : "send time"],
      ["Gateway date", response.rawDate],
      ["Gateway status", String(response.gatewayStatus)],
      ["Attempts", String(response.attempts)],
    ]),
  );
  if (response.warnings.length > 0) {
    view.append(element("h3", {}, "Warnings"), element("ul", { class: "warnings" }, ...response.warnings.map((text) => element("li", {}, text))));
  }
  return view;
}
