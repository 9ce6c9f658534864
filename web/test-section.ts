import type { Integration } from "../gen/smsgateway/v1/integration_pb.js";
import { byId } from "./dom.js";
import { createTestPanel } from "./test-panel.js";

/** The "Test integration" section, which tests stored integrations. */
export interface TestSection {
  /** Shows the section for an integration and moves to it. */
  open(integration: Integration): void;
}

/** Connects the section that a row's "Test" button opens. */
export function createTestSection(): TestSection {
  const section = byId("tester", HTMLElement);
  const title = byId("tester-title", HTMLHeadingElement);
  let integrationId = "";

  const panel = createTestPanel(byId("tester-panel", HTMLDivElement), {
    idPrefix: "t",
    plan: async () => ({ target: { target: { case: "integrationId", value: integrationId } } }),
  });

  byId("close-tester", HTMLButtonElement).addEventListener("click", () => {
    section.hidden = true;
  });

  return {
    open(integration) {
      integrationId = integration.id;
      title.textContent = `Test ${integration.id}`;
      panel.clear();
      section.hidden = false;
      section.scrollIntoView({ block: "start" });
      panel.focus();
    },
  };
}
