import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { FieldViolationSchema, type FieldViolation } from "../gen/smsgateway/v1/errors_pb.js";
import type { Integration, IntegrationSchema } from "../gen/smsgateway/v1/integration_pb.js";
import { integrationClient } from "./api.js";
import { byId } from "./dom.js";
import { clearInvalidFields, markInvalidFields, renderError, renderLocalProblems } from "./error-view.js";
import { changedFieldPaths, fillIntegrationForm, readIntegrationForm, type IntegrationValues } from "./integration-fields.js";
import { createTestPanel, type TestPlan } from "./test-panel.js";

/** The create and edit form of an integration. */
export interface IntegrationEditor {
  openNew(): void;
  openEdit(integration: Integration): void;
}

/** Result of a save, for the page to announce and to refresh the list. */
export interface SavedIntegration {
  integration: Integration;
  created: boolean;
}

/** Next step of a save: problems to show without calling the service, the request to send, or nothing to do. */
type Plan = { violations: FieldViolation[] } | { request: Parameters<typeof integrationClient.configureIntegration>[0] } | { nothing: true };

/** Connects the integration editor section; `onSaved` runs after each successful save. */
export function createIntegrationEditor(onSaved: (saved: SavedIntegration) => void): IntegrationEditor {
  const section = byId("editor", HTMLElement);
  const title = byId("editor-title", HTMLHeadingElement);
  const form = byId("integration-form", HTMLFormElement);
  const idInput = byId("f-id", HTMLInputElement);
  const idHint = byId("f-id-hint", HTMLParagraphElement);
  const apiKeyHint = byId("f-api_key-hint", HTMLParagraphElement);
  const secretKeyHint = byId("f-secret_key-hint", HTMLParagraphElement);
  const removeSecretField = byId("remove-secret-field", HTMLDivElement);
  const removeSecret = byId("f-remove_secret_key", HTMLInputElement);
  const saveButton = byId("save-integration", HTMLButtonElement);
  const outcome = byId("editor-outcome", HTMLDivElement);
  const newIdHint = idHint.textContent ?? "";

  /** The integration being edited, or undefined while creating one. */
  let stored: Integration | undefined;

  const open = (integration: Integration | undefined) => {
    stored = integration;
    testPanel.clear();
    fillIntegrationForm(form, integration);
    clearInvalidFields(form);
    outcome.replaceChildren();
    removeSecret.checked = false;

    idInput.value = integration?.id ?? "";
    idInput.readOnly = integration !== undefined;
    idHint.textContent = integration === undefined ? newIdHint : "The id cannot change.";
    title.textContent = integration === undefined ? "New integration" : `Edit ${integration.id}`;
    apiKeyHint.textContent =
      integration === undefined
        ? "Required. Write-only: never shown again after saving."
        : storedSecretText(integration.apiKeyHint, "Leave empty to keep it; type a key to replace it.");
    secretKeyHint.textContent =
      integration === undefined || integration.secretKeyHint === ""
        ? "Write-only. None stored."
        : storedSecretText(integration.secretKeyHint, "Leave empty to keep it.");
    removeSecretField.hidden = integration === undefined || integration.secretKeyHint === "";

    section.hidden = false;
    section.scrollIntoView({ block: "start" });
    (integration === undefined ? idInput : byId("f-display_name", HTMLInputElement)).focus();
  };

  const plan = async (): Promise<Plan> => {
    const { values, violations } = readIntegrationForm(form);
    if (removeSecret.checked && values.secretKey !== "") {
      violations.push(violation("secret_key", "type a new secret key or remove the stored one, not both"));
    }
    if (violations.length > 0) {
      return { violations };
    }

    if (stored !== undefined) {
      return planEdit(stored, values, removeSecret.checked);
    }
    const id = idInput.value.trim();
    if (id !== "" && (await exists(id))) {
      return { violations: [violation("id", `an integration with the id "${id}" exists; edit it from the list instead`)] };
    }
    // allow_missing creates the integration under the chosen id.
    return { request: { integration: { ...values, id }, allowMissing: id !== "" } };
  };

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    clearInvalidFields(form);
    outcome.replaceChildren();
    saveButton.disabled = true;

    void (async () => {
      try {
        const next = await plan();
        if ("violations" in next) {
          outcome.replaceChildren(renderLocalProblems(next.violations));
          markInvalidFields(form, next.violations, "");
          return;
        }
        if ("nothing" in next) {
          outcome.textContent = "Nothing changed, so nothing was saved.";
          return;
        }

        const response = await integrationClient.configureIntegration(next.request);
        if (response.integration !== undefined) {
          section.hidden = true;
          onSaved({ integration: response.integration, created: response.created });
        }
      } catch (error) {
        const rendered = renderError(error);
        outcome.replaceChildren(rendered.view);
        markInvalidFields(form, rendered.violations, "integration.");
      } finally {
        saveButton.disabled = false;
      }
    })();
  });

  const testPanel = createTestPanel(byId("editor-test", HTMLDivElement), {
    idPrefix: "et",
    plan: () => Promise.resolve(planTest(form, stored, idInput.value.trim(), removeSecret.checked)),
    markIntegrationFields: (violations) => markInvalidFields(form, violations, "integration."),
  });

  byId("cancel-edit", HTMLButtonElement).addEventListener("click", () => {
    section.hidden = true;
  });

  return { openNew: () => open(undefined), openEdit: (integration) => open(integration) };
}

/** The service's hint of a stored secret that its encryption keys cannot decrypt. */
const UNREADABLE_SECRET_HINT = "(cannot be decrypted)";

/** Describes a stored secret from its hint: `keep` for a readable one, a request to replace an unreadable one. */
function storedSecretText(hint: string, keep: string): string {
  if (hint === UNREADABLE_SECRET_HINT) {
    return "Stored, but the service's encryption keys cannot decrypt it: type the key again to replace it.";
  }
  return `Stored: ${hint}. ${keep}`;
}

/**
 * Plans an update that sends only the changed fields, named in the update
 * mask, so secrets left empty are neither resent nor erased.
 */
function planEdit(stored: Integration, values: IntegrationValues, removeSecretKey: boolean): Plan {
  const paths = changedFieldPaths(stored, values);
  if (removeSecretKey) {
    paths.push("secret_key");
  }
  if (paths.length === 0) {
    return { nothing: true };
  }

  const changed: Record<string, unknown> = { id: stored.id };
  for (const path of paths) {
    const key = path.replace(/_([a-z])/g, (_, letter: string) => letter.toUpperCase()) as keyof IntegrationValues;
    changed[key] = values[key];
  }
  return { request: { integration: changed as MessageInitShape<typeof IntegrationSchema>, updateMask: { paths } } };
}

/**
 * Plans the test of the form's values, unsaved. A new integration is sent
 * whole. An edit sends the changed fields with their update mask, as a save
 * would, so the service fills in the stored secrets. An edit with no change
 * tests the stored integration.
 */
function planTest(form: HTMLFormElement, stored: Integration | undefined, id: string, removeSecretKey: boolean): TestPlan {
  const { values, violations } = readIntegrationForm(form);
  if (violations.length > 0) {
    return { violations };
  }
  if (stored === undefined) {
    return { target: { target: { case: "integration", value: { ...values, id } } } };
  }

  const edit = planEdit(stored, values, removeSecretKey);
  if (!("request" in edit)) {
    return { target: { target: { case: "integrationId", value: stored.id } } };
  }
  return { target: { target: { case: "integration", value: edit.request.integration ?? {} }, updateMask: edit.request.updateMask } };
}

/** Returns whether an integration with this id exists; errors other than NOT_FOUND are thrown. */
async function exists(id: string): Promise<boolean> {
  try {
    await integrationClient.getIntegration({ id });
    return true;
  } catch (error) {
    if (ConnectError.from(error).code === Code.NotFound) {
      return false;
    }
    throw error;
  }
}

function violation(field: string, description: string): FieldViolation {
  return create(FieldViolationSchema, { field, description });
}
