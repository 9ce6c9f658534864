import { createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { IntegrationService } from "../gen/smsgateway/v1/integration_service_pb.js";
import { SmsService } from "../gen/smsgateway/v1/sms_service_pb.js";
import { readApiKey } from "./api-key.js";

/** Adds `authorization: Bearer <key>` to every call when the operator entered a service API key. */
const bearerApiKey: Interceptor = (next) => async (request) => {
  const key = readApiKey();
  if (key !== "") {
    request.header.set("authorization", `Bearer ${key}`);
  }
  return next(request);
};

/** The console is served by the service itself, so the API is at the page's origin. */
const transport = createConnectTransport({ baseUrl: window.location.origin, interceptors: [bearerApiKey] });

/** Client of `smsgateway.v1.IntegrationService`. */
export const integrationClient = createClient(IntegrationService, transport);

/** Client of `smsgateway.v1.SmsService`. */
export const smsClient = createClient(SmsService, transport);
