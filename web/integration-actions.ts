import type { Integration } from "../gen/smsgateway/v1/integration_pb.js";

/** One button on an integration's row in the list. */
export interface RowAction {
  label: string;
  /** Marks a destructive action for styling. */
  danger?: boolean;
  run(integration: Integration): void | Promise<void>;
}

/** Callbacks behind the row actions, supplied by the page. */
export interface RowActionHandlers {
  edit(integration: Integration): void;
  useForSending(integration: Integration): void;
  test(integration: Integration): void;
  remove(integration: Integration): Promise<void>;
}

/** Returns the actions offered on every integration row, in display order. */
export function rowActions(handlers: RowActionHandlers): RowAction[] {
  return [
    { label: "Edit", run: handlers.edit },
    { label: "Send", run: handlers.useForSending },
    { label: "Test", run: handlers.test },
    { label: "Delete", danger: true, run: handlers.remove },
  ];
}
