import { create } from "@bufbuild/protobuf";
import { FieldViolationSchema, type FieldViolation } from "../gen/smsgateway/v1/errors_pb.js";
import type { Integration } from "../gen/smsgateway/v1/integration_pb.js";

/** Largest value of a proto `int32` field. */
const MAX_INT32 = 2_147_483_647;

type EditableKey =
  | "displayName"
  | "baseUrl"
  | "apiKeyHeader"
  | "apiKey"
  | "secretKeyHeader"
  | "secretKey"
  | "defaultSender"
  | "idPath"
  | "datePath"
  | "authenticateByToken"
  | "authUrl"
  | "tokenKey"
  | "maxConcurrentSends"
  | "maxSendsPerSecond"
  | "tokenLifetimeSeconds";

/** The settable fields of an integration, as read from the form. */
export type IntegrationValues = Pick<Integration, EditableKey>;

/**
 * Kind of value a form control edits. `secret` is write-only text, `count`
 * a whole number where empty means 0, `optionalCount` a whole number where
 * empty means unset, and `rate` a decimal number where empty means 0.
 */
type FieldKind = "text" | "secret" | "flag" | "count" | "optionalCount" | "rate";

interface FieldSpec {
  /** Proto field name, also the form control's `name` and the update mask path. */
  name: string;
  key: EditableKey;
  kind: FieldKind;
}

/** Every settable field of `smsgateway.v1.Integration`, in form order. */
const FIELDS: readonly FieldSpec[] = [
  { name: "display_name", key: "displayName", kind: "text" },
  { name: "base_url", key: "baseUrl", kind: "text" },
  { name: "default_sender", key: "defaultSender", kind: "text" },
  { name: "api_key_header", key: "apiKeyHeader", kind: "text" },
  { name: "api_key", key: "apiKey", kind: "secret" },
  { name: "secret_key_header", key: "secretKeyHeader", kind: "text" },
  { name: "secret_key", key: "secretKey", kind: "secret" },
  { name: "id_path", key: "idPath", kind: "text" },
  { name: "date_path", key: "datePath", kind: "text" },
  { name: "authenticate_by_token", key: "authenticateByToken", kind: "flag" },
  { name: "auth_url", key: "authUrl", kind: "text" },
  { name: "token_key", key: "tokenKey", kind: "text" },
  { name: "token_lifetime_seconds", key: "tokenLifetimeSeconds", kind: "optionalCount" },
  { name: "max_concurrent_sends", key: "maxConcurrentSends", kind: "count" },
  { name: "max_sends_per_second", key: "maxSendsPerSecond", kind: "rate" },
];

function control(form: HTMLFormElement, name: string): HTMLInputElement {
  const found = form.elements.namedItem(name);
  if (!(found instanceof HTMLInputElement)) {
    throw new Error(`integration form has no input named ${name}`);
  }
  return found;
}

/** The form's values, or the problems that stop them from being sent. */
export interface ReadResult {
  values: IntegrationValues;
  violations: FieldViolation[];
}

/** Reads the integration form. Numbers are checked here, everything else by the service. */
export function readIntegrationForm(form: HTMLFormElement): ReadResult {
  const values: Record<string, unknown> = {};
  const violations: FieldViolation[] = [];
  const reject = (field: string, description: string) => violations.push(create(FieldViolationSchema, { field, description }));

  for (const { name, key, kind } of FIELDS) {
    const input = control(form, name);
    const text = input.value.trim();
    if (kind === "text" || kind === "secret") {
      values[key] = input.value;
    } else if (kind === "flag") {
      values[key] = input.checked;
    } else if (input.validity.badInput) {
      reject(name, "is not a number");
    } else if (kind === "rate") {
      const rate = text === "" ? 0 : Number(text);
      if (!Number.isFinite(rate) || rate < 0) {
        reject(name, "must be a number of 0 or more, or empty for the service default");
      }
      values[key] = rate;
    } else if (text === "" && kind === "optionalCount") {
      values[key] = undefined;
    } else {
      const count = text === "" ? 0 : Number(text);
      if (!Number.isInteger(count) || count < 0 || count > MAX_INT32) {
        reject(name, `must be a whole number from 0 to ${MAX_INT32}, or empty for the service default`);
      }
      values[key] = count;
    }
  }
  return { values: values as IntegrationValues, violations };
}

/** Fills the form from a stored integration, or clears it for a new one. Secrets stay empty. */
export function fillIntegrationForm(form: HTMLFormElement, integration: Integration | undefined): void {
  for (const { name, key, kind } of FIELDS) {
    const input = control(form, name);
    const value = integration?.[key];
    if (kind === "flag") {
      input.checked = value === true;
    } else if (kind === "secret" || value === undefined) {
      input.value = "";
    } else if ((kind === "count" || kind === "rate") && value === 0) {
      input.value = "";
    } else {
      input.value = String(value);
    }
  }
}

/**
 * Returns the update mask paths of an edit: the fields whose value differs
 * from the stored integration, plus each secret that was typed in. An
 * empty secret is left out, so the stored one is kept and never resent.
 */
export function changedFieldPaths(stored: Integration, values: IntegrationValues): string[] {
  const paths: string[] = [];
  for (const { name, key, kind } of FIELDS) {
    const changed = kind === "secret" ? values[key] !== "" : values[key] !== stored[key];
    if (changed) {
      paths.push(name);
    }
  }
  return paths;
}
