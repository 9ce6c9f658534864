import { byId } from "./dom.js";

/**
 * The service API key lives in `sessionStorage`: it survives reloads of the
 * tab but not closing it, and other sites cannot read it.
 */
const STORAGE_KEY = "smsgateway.apiKey";

/** Returns the stored service API key, or "" when none is stored or storage is blocked. */
export function readApiKey(): string {
  try {
    return sessionStorage.getItem(STORAGE_KEY) ?? "";
  } catch {
    return "";
  }
}

function storeApiKey(key: string): boolean {
  try {
    if (key === "") {
      sessionStorage.removeItem(STORAGE_KEY);
    } else {
      sessionStorage.setItem(STORAGE_KEY, key);
    }
    return true;
  } catch {
    return false;
  }
}

/**
 * Connects the API key form in the page header. `onChange` runs after the
 * key is stored or forgotten, so the page can reload what the key unlocks.
 */
export function wireApiKeyForm(onChange: () => void): void {
  const form = byId("api-key-form", HTMLFormElement);
  const input = byId("api-key", HTMLInputElement);
  const forget = byId("api-key-forget", HTMLButtonElement);
  const status = byId("api-key-status", HTMLParagraphElement);

  const showState = () => {
    status.textContent = readApiKey() === "" ? "No key: calls are sent without one." : "Calls are sent with your key (kept for this tab only).";
  };

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const key = input.value.trim();
    input.value = "";
    if (!storeApiKey(key)) {
      status.textContent = "The browser blocks session storage, so the key cannot be kept.";
      return;
    }
    showState();
    onChange();
  });
  forget.addEventListener("click", () => {
    input.value = "";
    storeApiKey("");
    showState();
    onChange();
  });
  showState();
}
