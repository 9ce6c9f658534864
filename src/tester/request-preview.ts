import { create } from "@bufbuild/protobuf";

import {
  CredentialKind,
  PreparedHeaderSchema,
  PreparedRequestSchema,
  type PreparedHeader,
  type PreparedRequest,
} from "../../gen/smsgateway/v1/integration_service_pb.js";
import { buildSmsRequest, credentialHeaders, type SmsMessage } from "../dispatch/sms-request.js";
import type { Integration } from "../domain/integration.js";
import { secretHint } from "../services/integration-message.js";

/** The requests of one send, as a test shows them. */
export interface PreviewedRequests {
  /** The token request, present with token authentication. */
  token?: PreparedRequest;
  sms: PreparedRequest;
}

/**
 * Builds the requests that a send of `message` through `integration` makes,
 * from the same functions the dispatcher builds them with, with every
 * credential masked.
 *
 * The API key and the secret key show their hints (`****abcd`). The token
 * is not known before the token request, so its header shows where the
 * token comes from.
 *
 * @throws InvalidArgumentError naming the passthrough field that is invalid,
 *   as a send would.
 */
export function previewRequests(integration: Integration, message: SmsMessage): PreviewedRequests {
  const sms = buildSmsRequest(integration, message);
  const smsHeaders = maskedHeaders(integration, sms.headers);
  if (!integration.authenticateByToken) {
    return { sms: prepared(sms.url, smsHeaders, sms.body) };
  }

  // The dispatcher adds the token header last, after the token request.
  smsHeaders.push(
    create(PreparedHeaderSchema, {
      name: integration.tokenKey,
      value: `<token from data.${integration.tokenKey} of the auth_url reply>`,
      credential: CredentialKind.TOKEN,
    }),
  );
  return {
    token: prepared(integration.authUrl, maskedHeaders(integration, credentialHeaders(integration)), "{}"),
    sms: prepared(sms.url, smsHeaders, sms.body),
  };
}

/** Lists headers in the order they were set, with the credential values replaced by their hints. */
function maskedHeaders(integration: Integration, headers: Record<string, string>): PreparedHeader[] {
  return Object.entries(headers).map(([name, value]) => {
    const credential = credentialOf(integration, name);
    const shown = credential === CredentialKind.UNSPECIFIED ? value : secretHint(value);
    return create(PreparedHeaderSchema, { name, value: shown, credential });
  });
}

/**
 * Tells which credential a header carries. Comparing names is enough,
 * because a passthrough header cannot take the name of a credential header.
 */
function credentialOf(integration: Integration, name: string): CredentialKind {
  if (name === integration.apiKeyHeader) {
    return CredentialKind.API_KEY;
  }
  if (name === integration.secretKeyHeader) {
    return CredentialKind.SECRET_KEY;
  }
  return CredentialKind.UNSPECIFIED;
}

function prepared(url: string, headers: PreparedHeader[], body: string): PreparedRequest {
  return create(PreparedRequestSchema, { method: "POST", url, headers, body });
}
