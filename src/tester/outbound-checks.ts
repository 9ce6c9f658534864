import { create } from "@bufbuild/protobuf";

import {
  OutboundCheckSchema,
  OutboundVerdict,
  type OutboundCheck,
} from "../../gen/smsgateway/v1/integration_service_pb.js";
import type { Integration } from "../domain/integration.js";
import { OutboundBlockedError } from "../errors.js";
import { outboundTargets, resolverErrorCode, type OutboundGuard } from "../outbound/outbound-guard.js";

/**
 * Judges each URL of an integration with the SSRF guard, in the order of a
 * send, and returns the verdicts instead of failing on the first blocked URL.
 *
 * The guard only parses the URL and resolves its host name through its
 * resolver, so no request and no connection goes out.
 *
 * @throws `signal.reason` when the signal aborts while a name resolves, and
 *   any error of the guard that is neither a block nor a resolver failure.
 */
export async function checkOutboundUrls(
  guard: OutboundGuard,
  integration: Integration,
  signal?: AbortSignal,
): Promise<OutboundCheck[]> {
  const checks: OutboundCheck[] = [];
  for (const { field, url } of outboundTargets(integration)) {
    checks.push(await checkOutboundUrl(guard, field, url, signal));
  }
  return checks;
}

async function checkOutboundUrl(guard: OutboundGuard, field: string, url: string, signal?: AbortSignal): Promise<OutboundCheck> {
  try {
    const addresses = await guard.checkUrl(field, url, signal);
    return create(OutboundCheckSchema, {
      field,
      url,
      verdict: OutboundVerdict.ALLOWED,
      addresses: addresses.map(({ address }) => address),
    });
  } catch (error) {
    if (error instanceof OutboundBlockedError) {
      return create(OutboundCheckSchema, {
        field,
        url,
        verdict: OutboundVerdict.BLOCKED,
        reason: error.reason,
        metadata: { ...error.metadata },
        description: error.problem,
      });
    }
    const code = resolverErrorCode(error);
    if (code === undefined || signal?.aborted === true) {
      throw error;
    }
    const host = new URL(url).hostname;
    return create(OutboundCheckSchema, {
      field,
      url,
      verdict: OutboundVerdict.UNRESOLVED,
      metadata: { host, code },
      description:
        `host "${host}" did not resolve (${code}), so the SSRF guard could not judge its addresses, ` +
        "and a send would fail with UNAVAILABLE. Check the host name and the service's DNS.",
    });
  }
}
