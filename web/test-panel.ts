import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { FieldViolationSchema, type FieldViolation } from "../gen/smsgateway/v1/errors_pb.js";
import type { TestIntegrationRequestSchema } from "../gen/smsgateway/v1/integration_service_pb.js";
import { integrationClient } from "./api.js";
import { element } from "./dom.js";
import { clearInvalidFields, markInvalidFields, renderError, renderLocalProblems } from "./error-view.js";
import { parsePassthrough } from "./send-form.js";
import { renderTestResult } from "./test-result-view.js";

/** The part of a TestIntegration request that names the integration. */
export type TestTarget = Pick<MessageInitShape<typeof TestIntegrationRequestSchema>, "target" | "updateMask">;

/** The plan of a test: the integration to test, or the problems in the page that stop the test. */
export type TestPlan = { target: TestTarget } | { violations: FieldViolation[] };

export interface TestPanelOptions {
  /** Prefix of the panel's element ids, unique on the page. */
  idPrefix: string;
  /** Returns the integration to test, read when the operator runs the test. */
  plan(): Promise<TestPlan>;
  /**
   * Marks the invalid integration fields outside the panel, named with or
   * without the `integration.` prefix; an empty list clears the marks.
   */
  markIntegrationFields?(violations: readonly FieldViolation[]): void;
}

/** A test form with its result area. */
export interface TestPanel {
  /** Clears the result and the marks, keeping what the operator typed. */
  clear(): void;
  /** Moves the focus to the recipient field. */
  focus(): void;
}

/**
 * Builds a test form in `host`: the test SMS's recipient, text, sender and
 * passthrough, whether to send it, and a "Run test" button. The result shows
 * the prepared requests, the SSRF guard's verdict and, after a send, the
 * gateway's reply.
 */
export function createTestPanel(host: HTMLElement, options: TestPanelOptions): TestPanel {
  const controlId = (name: string) => `${options.idPrefix}-${name}`;
  const to = element("input", { id: controlId("to"), name: "to", type: "tel", autocomplete: "off", placeholder: "+15551234567" });
  const content = element("textarea", { id: controlId("content"), name: "content", rows: "2" });
  const sender = element("input", { id: controlId("sender"), name: "sender", autocomplete: "off" });
  const passthrough = element("textarea", {
    id: controlId("passthrough"),
    name: "passthrough",
    rows: "2",
    spellcheck: "false",
    placeholder: '{"body": {"priority": "high"}}',
  });
  const send = element("input", { id: controlId("send"), name: "send", type: "checkbox" });
  const runButton = element("button", { type: "submit", class: "primary" }, "Run test");
  const outcome = element("div", { class: "test-outcome", "aria-live": "polite" });

  const form = element(
    "form",
    { class: "test-form", novalidate: "" },
    field(to, "Recipient", "Required to send. Without one, a dry run shows a placeholder."),
    field(content, "Message text", "Required to send. Without it, a dry run shows a placeholder."),
    field(sender, "Sender override", "Optional; empty uses the default sender."),
    field(passthrough, "Passthrough of the test (JSON)", 'Optional, as in "Send an SMS".'),
    element("div", { class: "field check" }, send, element("label", { for: send.id }, "Send a test SMS through the gateway")),
    element("div", { class: "actions" }, runButton),
  );
  host.append(form, outcome);

  const clear = () => {
    clearInvalidFields(form);
    options.markIntegrationFields?.([]);
    outcome.replaceChildren();
  };
  const showProblems = (view: HTMLElement, violations: readonly FieldViolation[]) => {
    outcome.replaceChildren(element("div", { class: "outcome failure" }, view));
    markInvalidFields(form, violations, "");
    options.markIntegrationFields?.(violations);
  };

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    clear();

    const parsed = parsePassthrough(passthrough.value);
    if (typeof parsed === "string") {
      const violations = [create(FieldViolationSchema, { field: "passthrough", description: parsed })];
      showProblems(renderLocalProblems(violations), violations);
      return;
    }

    runButton.disabled = true;
    void (async () => {
      try {
        const plan = await options.plan();
        if ("violations" in plan) {
          showProblems(renderLocalProblems(plan.violations), plan.violations);
          return;
        }
        const response = await integrationClient.testIntegration({
          ...plan.target,
          to: to.value,
          content: content.value,
          sender: sender.value === "" ? undefined : sender.value,
          passthrough: parsed,
          send: send.checked,
        });
        outcome.replaceChildren(renderTestResult(response));
      } catch (error) {
        const rendered = renderError(error);
        showProblems(rendered.view, rendered.violations);
      } finally {
        runButton.disabled = false;
      }
    })();
  });

  return { clear, focus: () => to.focus() };
}

/** Wraps a control in a labelled field with a hint. */
function field(control: HTMLInputElement | HTMLTextAreaElement, label: string, hint: string): HTMLDivElement {
  const hintId = `${control.id}-hint`;
  control.setAttribute("aria-describedby", hintId);
  return element("div", { class: "field" }, element("label", { for: control.id }, label), control, element("p", { id: hintId, class: "hint" }, hint));
}
