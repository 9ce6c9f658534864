/**
 * Entry point of the web console: connects the page's sections to the
 * IntegrationService and SmsService APIs of the service that serves it.
 */
import { wireApiKeyForm } from "./api-key.js";
import { byId } from "./dom.js";
import { createIntegrationEditor } from "./integration-editor.js";
import { createIntegrationList } from "./integration-list.js";
import { createSendForm } from "./send-form.js";
import { createTestSection } from "./test-section.js";

const sendForm = createSendForm();
const testSection = createTestSection();
const editor = createIntegrationEditor(({ integration, created }) => {
  void list.reload(`${created ? "Created" : "Saved"} ${integration.id}.`);
});
const list = createIntegrationList({
  edit: (integration) => editor.openEdit(integration),
  useForSending: (integration) => sendForm.choose(integration.id),
  test: (integration) => testSection.open(integration),
  loaded: (integrations) => sendForm.setIntegrations(integrations),
  failed: (error) => sendForm.listFailed(error),
});

byId("new-integration", HTMLButtonElement).addEventListener("click", () => {
  list.announce("");
  editor.openNew();
});
byId("refresh-list", HTMLButtonElement).addEventListener("click", () => void list.reload());
wireApiKeyForm(() => void list.reload());
void list.reload();
