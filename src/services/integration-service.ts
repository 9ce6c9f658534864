import { create } from "@bufbuild/protobuf";
import {
  ConfigureIntegrationResponseSchema,
  DeleteIntegrationResponseSchema,
  GetIntegrationResponseSchema,
  ListIntegrationsResponseSchema,
  type ConfigureIntegrationRequest,
  type ConfigureIntegrationResponse,
  type DeleteIntegrationRequest,
  type DeleteIntegrationResponse,
  type GetIntegrationRequest,
  type GetIntegrationResponse,
  type ListIntegrationsRequest,
  type ListIntegrationsResponse,
} from "../../gen/smsgateway/v1/integration_service_pb.js";
import type { Integration, IntegrationFields } from "../domain/integration.js";
import { integrationIdProblem, validateIntegration } from "../domain/integration-validation.js";
import { InvalidArgumentError, NotFoundError, OutboundBlockedError } from "../errors.js";
import type { ServiceMetrics } from "../observability/metrics.js";
import type { OutboundGuard } from "../outbound/outbound-guard.js";
import type { CallContext } from "../rpc/call-context.js";
import { assertUnreadableSecretsReplaced } from "../security/unreadable-secrets.js";
import type { IntegrationStore, StoredIntegration } from "../store/integration-store.js";
import { applyUpdate, fieldsFromMessage, toMessage } from "./integration-message.js";
import { decodePageToken, encodePageToken } from "./page-token.js";

const DEFAULT_PAGE_SIZE = 50;
const MAX_PAGE_SIZE = 1000;

/** Implements `smsgateway.v1.IntegrationService`. */
export class IntegrationService {
  constructor(
    private readonly store: IntegrationStore,
    private readonly outbound: OutboundGuard,
    private readonly metrics?: ServiceMetrics,
  ) {}

  async configureIntegration(request: ConfigureIntegrationRequest, context: CallContext): Promise<ConfigureIntegrationResponse> {
    const input = request.integration;
    if (input === undefined) {
      throw InvalidArgumentError.field("integration", "required: the integration to create or update");
    }
    const maskPaths = request.updateMask?.paths ?? [];

    if (input.id === "") {
      if (maskPaths.length > 0) {
        throw InvalidArgumentError.field("update_mask", "only valid when updating; set integration.id to the integration to update");
      }
      const created = await this.store.create(await this.accepted(fieldsFromMessage(input), context));
      context.log.info({ integrationId: created.id }, "integration created");
      return create(ConfigureIntegrationResponseSchema, { integration: toMessage(created), created: true });
    }

    requireId(input.id, "integration.id");
    const existing = await this.store.get(input.id);
    if (existing === null) {
      if (!request.allowMissing) {
        throw new NotFoundError("integration", input.id);
      }
      const created = await this.store.create(await this.accepted(fieldsFromMessage(input), context), input.id);
      context.log.info({ integrationId: created.id }, "integration created");
      return create(ConfigureIntegrationResponseSchema, { integration: toMessage(created), created: true });
    }

    // NOTE: two concurrent partial updates of one integration can each read
    // the old row, and the later write wins for the fields both masks name.
    const fields = applyUpdate(existing, input, maskPaths);
    assertUnreadableSecretsReplaced(existing, fields);
    const updated = await this.store.update(input.id, await this.accepted(fields, context));
    context.log.info({ integrationId: updated.id, fields: maskPaths }, "integration updated");
    return create(ConfigureIntegrationResponseSchema, { integration: toMessage(updated), created: false });
  }

  async getIntegration(request: GetIntegrationRequest): Promise<GetIntegrationResponse> {
    const integration = await this.load(request.id, "id");

    return create(GetIntegrationResponseSchema, { integration: toMessage(integration) });
  }

  async listIntegrations(request: ListIntegrationsRequest): Promise<ListIntegrationsResponse> {
    if (request.pageSize < 0 || request.pageSize > MAX_PAGE_SIZE) {
      throw InvalidArgumentError.field("page_size", `must be from 1 to ${MAX_PAGE_SIZE}, or 0 for the default of ${DEFAULT_PAGE_SIZE}`);
    }
    const limit = request.pageSize || DEFAULT_PAGE_SIZE;
    const afterId = decodePageToken(request.pageToken, "page_token");

    // Reading one extra row shows whether another page follows, without a count query.
    const rows = await this.store.list({ limit: limit + 1, afterId });
    const page = rows.slice(0, limit);
    const last = page.at(-1);

    return create(ListIntegrationsResponseSchema, {
      integrations: page.map(toMessage),
      nextPageToken: rows.length > limit && last !== undefined ? encodePageToken(last.id) : "",
    });
  }

  async deleteIntegration(request: DeleteIntegrationRequest, context: CallContext): Promise<DeleteIntegrationResponse> {
    requireId(request.id, "id");

    const deleted = await this.store.delete(request.id);
    if (!deleted && !request.allowMissing) {
      throw new NotFoundError("integration", request.id);
    }
    if (deleted) {
      context.log.info({ integrationId: request.id }, "integration deleted");
    }

    return create(DeleteIntegrationResponseSchema, {});
  }

  /**
   * Validates the fields of an integration about to be saved, then checks
   * its URLs with the SSRF guard.
   */
  private async accepted<T extends IntegrationFields>(fields: T, context: CallContext): Promise<T> {
    validated(fields);
    let unresolved: Awaited<ReturnType<OutboundGuard["checkIntegration"]>>;
    try {
      unresolved = await this.outbound.checkIntegration(fields);
    } catch (error) {
      if (error instanceof OutboundBlockedError) {
        this.metrics?.ssrfRefusal("", error.reason);
      }
      throw error;
    }
    for (const { field, host, code } of unresolved) {
      context.log.info({ field, host, code }, "gateway host did not resolve; the check before each send will judge it");
    }
    return fields;
  }

  /** Returns the integration with the given id, or throws NOT_FOUND. */
  async load(id: string, field: string): Promise<StoredIntegration> {
    requireId(id, field);
    const integration = await this.store.get(id);
    if (integration === null) {
      throw new NotFoundError("integration", id);
    }
    return integration;
  }
}

function requireId(id: string, field: string): void {
  if (id === "") {
    throw InvalidArgumentError.field(field, "required: the id of an integration, as returned by ConfigureIntegration");
  }
  const problem = integrationIdProblem(id);
  if (problem !== null) {
    throw InvalidArgumentError.field(field, problem);
  }
}

function validated<T extends Parameters<typeof validateIntegration>[0]>(fields: T): T {
  const violations = validateIntegration(fields, "integration.");
  if (violations.length > 0) {
    throw new InvalidArgumentError(violations);
  }
  return fields;
}
