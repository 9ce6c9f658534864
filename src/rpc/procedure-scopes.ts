import type { Scope } from "../security/api-keys.js";

/**
 * The scope an API key needs for each procedure. When API keys are
 * configured, a procedure that is neither here nor in
 * {@link PUBLIC_PROCEDURES} is denied to every caller, so a new RPC needs a
 * row here before anyone can call it.
 */
export const PROCEDURE_SCOPES: Readonly<Record<string, Scope>> = {
  "smsgateway.v1.IntegrationService/GetIntegration": "integrations:read",
  "smsgateway.v1.IntegrationService/ListIntegrations": "integrations:read",
  "smsgateway.v1.IntegrationService/ConfigureIntegration": "integrations:write",
  "smsgateway.v1.IntegrationService/DeleteIntegration": "integrations:write",
  // Write, because it can send SMS and makes the service resolve any host
  // name, and because it tests unsaved integrations with stored secrets.
  "smsgateway.v1.IntegrationService/TestIntegration": "integrations:write",
  "smsgateway.v1.SmsService/SendSms": "sms:send",
  "smsgateway.v1.SmsService/SendSmsBatch": "sms:send",
};

/**
 * Procedures that every caller may call without an API key: health checks,
 * which probes call without credentials, and server reflection, which tools
 * such as `buf curl` and `grpcurl` use to read the schema.
 */
export const PUBLIC_PROCEDURES: ReadonlySet<string> = new Set([
  "grpc.health.v1.Health/Check",
  "grpc.health.v1.Health/Watch",
  "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
  "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
]);
