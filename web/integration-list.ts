import type { Integration } from "../gen/smsgateway/v1/integration_pb.js";
import { integrationClient } from "./api.js";
import { byId, element } from "./dom.js";
import { renderError } from "./error-view.js";
import { rowActions, type RowActionHandlers } from "./integration-actions.js";

/** Integrations fetched per page; the API allows up to 1000. */
const PAGE_SIZE = 100;

/** The integration table. */
export interface IntegrationList {
  /**
   * Fetches the first page again, replacing the rows and clearing the
   * confirmation, and then shows `confirmation` if given. A load that a later
   * one overtook changes nothing when it ends.
   */
  reload(confirmation?: string): Promise<void>;
  /** Shows a short confirmation above the table. */
  announce(text: string): void;
}

interface ListCallbacks {
  edit(integration: Integration): void;
  useForSending(integration: Integration): void;
  test(integration: Integration): void;
  /** Runs after every load with all integrations listed so far. */
  loaded(integrations: readonly Integration[]): void;
  /** Runs when loading the first page fails, with the RPC error. */
  failed(error: unknown): void;
}

/** Connects the integrations section: the table, paging, and the row actions. */
export function createIntegrationList(callbacks: ListCallbacks): IntegrationList {
  const rows = byId("integration-rows", HTMLTableSectionElement);
  const status = byId("list-status", HTMLParagraphElement);
  const errorBox = byId("list-error", HTMLDivElement);
  const loadMore = byId("load-more", HTMLButtonElement);

  const announce = (text: string) => {
    status.textContent = text;
  };

  let listed: Integration[] = [];
  let nextPageToken = "";
  // Counts the loads started, so that a reply which arrives after a later load started is dropped.
  // It may come from another API key, such as the key in use before the user changed it.
  let loadsStarted = 0;

  const load = async (pageToken: string, confirmation = "") => {
    loadsStarted += 1;
    const thisLoad = loadsStarted;
    // A confirmation such as "Created p1." is stale once the list loads
    // again, for example after the API key changed.
    announce("");
    errorBox.replaceChildren();
    try {
      const page = await integrationClient.listIntegrations({ pageSize: PAGE_SIZE, pageToken });
      if (thisLoad !== loadsStarted) {
        return;
      }
      listed = pageToken === "" ? page.integrations : [...listed, ...page.integrations];
      nextPageToken = page.nextPageToken;
    } catch (error) {
      if (thisLoad !== loadsStarted) {
        return;
      }
      errorBox.replaceChildren(renderError(error).view);
      if (pageToken === "") {
        // Rows listed earlier, perhaps with another API key, would no longer be current.
        listed = [];
        rows.replaceChildren(emptyRow("Integrations could not be listed; the error above says why."));
        loadMore.hidden = true;
        callbacks.failed(error);
      }
      // The change that the confirmation reports was made, even though the list could not be read after it.
      announce(confirmation);
      return;
    }

    rows.replaceChildren(...listed.map((integration) => row(integration, actions)));
    if (listed.length === 0) {
      rows.append(emptyRow("No integrations yet. Create one with “New integration”."));
    }
    loadMore.hidden = nextPageToken === "";
    callbacks.loaded(listed);
    announce(confirmation);
  };

  const handlers: RowActionHandlers = {
    edit: callbacks.edit,
    useForSending: callbacks.useForSending,
    test: callbacks.test,
    async remove(integration) {
      if (!window.confirm(`Delete the integration "${integration.id}"? Sends that name it will fail.`)) {
        return;
      }
      try {
        await integrationClient.deleteIntegration({ id: integration.id });
      } catch (error) {
        errorBox.replaceChildren(renderError(error).view);
        return;
      }
      await load("", `Deleted ${integration.id}.`);
    },
  };
  // Each row action starts something new, so it clears the confirmation of the previous one.
  const actions = rowActions(handlers).map((action) => ({
    ...action,
    run: (integration: Integration) => {
      announce("");
      return action.run(integration);
    },
  }));

  loadMore.addEventListener("click", () => void load(nextPageToken));
  return { reload: (confirmation) => load("", confirmation), announce };
}

/** Returns a table row with only a message, for a table without integrations. */
function emptyRow(text: string): HTMLTableRowElement {
  return element("tr", {}, element("td", { colspan: "6", class: "empty" }, text));
}

function row(integration: Integration, actions: ReturnType<typeof rowActions>): HTMLTableRowElement {
  const cell = (label: string, text: string) => element("td", { "data-label": label }, text);
  const buttons = actions.map((action) => {
    const button = element("button", { type: "button", "aria-label": `${action.label} ${integration.id}` }, action.label);
    if (action.danger === true) {
      button.classList.add("danger");
    }
    button.addEventListener("click", () => void action.run(integration));
    return button;
  });

  return element(
    "tr",
    {},
    element("th", { scope: "row", "data-label": "Id" }, integration.id),
    cell("Name", integration.displayName),
    cell("Base URL", integration.baseUrl),
    cell("Default sender", integration.defaultSender),
    cell("API key", integration.apiKeyHint),
    element("td", { class: "row-actions" }, ...buttons),
  );
}
