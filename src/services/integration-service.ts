import { setTimeout as sleep } from "node:timers/promises";
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
  type TestIntegrationRequest,
  type TestIntegrationResponse,
} from "../../gen/smsgateway/v1/integration_service_pb.js";
import type { Integration as IntegrationMessage } from "../../gen/smsgateway/v1/integration_pb.js";
import type { Integration, IntegrationFields } from "../domain/integration.js";
import { integrationIdProblem, validateIntegration } from "../domain/integration-validation.js";
import { InvalidArgumentError, NotFoundError, OutboundBlockedError, VersionConflictError } from "../errors.js";
import type { ServiceMetrics } from "../observability/metrics.js";
import type { OutboundGuard } from "../outbound/outbound-guard.js";
import type { CallContext } from "../rpc/call-context.js";
import { assertSecretsReadable, assertUnreadableSecretsReplaced } from "../security/unreadable-secrets.js";
import type { IntegrationStore, StoredIntegration } from "../store/integration-store.js";
import { testMessage, type IntegrationTester } from "../tester/integration-tester.js";
import { applyUpdate, checkMaskPaths, fieldsFromMessage, toMessage } from "./integration-message.js";
import { decodePageToken, encodePageToken } from "./page-token.js";

const DEFAULT_PAGE_SIZE = 50;
const MAX_PAGE_SIZE = 1000;
/** Maximum attempts of an update that concurrent writes keep overtaking, after which it fails with ABORTED. */
const MAX_UPDATE_ATTEMPTS = 5;
/** Base pause before an update computed again after a version conflict, in milliseconds. */
const UPDATE_RETRY_DELAY_MS = 5;
/** Added to the error of an update without `update_mask` that leaves required fields empty. */
const WHOLE_UPDATE_HINT =
  "Without update_mask, an update replaces the whole integration, so it must set every required field " +
  "(an empty api_key or secret_key keeps the stored one). To change only some fields, name them in update_mask, " +
  'such as default_sender ("updateMask": "defaultSender" in JSON)';

/** Implements `smsgateway.v1.IntegrationService`. */
export class IntegrationService {
  constructor(
    private readonly store: IntegrationStore,
    private readonly outbound: OutboundGuard,
    private readonly metrics: ServiceMetrics | undefined,
    private readonly tester: IntegrationTester,
  ) {}

  async configureIntegration(request: ConfigureIntegrationRequest, context: CallContext): Promise<ConfigureIntegrationResponse> {
    const input = request.integration;
    if (input === undefined) {
      throw InvalidArgumentError.field("integration", "required: the integration to create or update");
    }
    const maskPaths = request.updateMask?.paths ?? [];

    const { integration, created } = await this.save(input, maskPaths, request.allowMissing, context);

    return create(ConfigureIntegrationResponseSchema, { integration: toMessage(integration), created });
  }

  /**
   * Creates the integration, or updates it over the stored version that the
   * update was computed from. An update writes every field, and a cached copy
   * can be older than the row until the change notification arrives, so a
   * write that finds another version reads the row again and starts over.
   *
   * @throws VersionConflictError when other writes came first {@link MAX_UPDATE_ATTEMPTS} times.
   */
  private async save(
    input: IntegrationMessage,
    maskPaths: readonly string[],
    allowMissing: boolean,
    context: CallContext,
  ): Promise<{ integration: StoredIntegration; created: boolean }> {
    for (let attempt = 1; ; attempt++) {
      const { existing, fields } = await this.resolveFields(input, maskPaths, allowMissing);
      if (existing === null) {
        const created = await this.store.create(await this.accepted(fields, context), input.id === "" ? undefined : input.id);
        context.log.info({ integrationId: created.id }, "integration created");
        return { integration: created, created: true };
      }

      try {
        const updated = await this.store.update(input.id, await this.accepted(fields, context, maskPaths.length === 0), existing);
        context.log.info({ integrationId: updated.id, fields: maskPaths }, "integration updated");
        return { integration: updated, created: false };
      } catch (error) {
        if (!(error instanceof VersionConflictError) || attempt >= MAX_UPDATE_ATTEMPTS) {
          throw error;
        }
        // The failed write dropped the cached copy, so the next attempt reads the stored row. The
        // jittered pause keeps writers that keep colliding from retrying in step.
        context.log.info({ integrationId: input.id, attempt }, "integration changed by another write; updating the stored version");
        await sleep(attempt * UPDATE_RETRY_DELAY_MS * (1 + Math.random()));
      }
    }
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

  async testIntegration(request: TestIntegrationRequest, context: CallContext): Promise<TestIntegrationResponse> {
    const message = testMessage(request);
    const integration = await this.testTarget(request, context);

    const unsaved = request.target.case === "integration";
    return this.tester.test(integration, message, { send: request.send, unsaved, context });
  }

  /**
   * Computes the fields that ConfigureIntegration stores for `input`, before
   * they are checked: a new integration's fields when `input.id` is empty or
   * names no integration (which `allowMissing` permits), else the stored
   * integration with the update applied.
   *
   * @throws NotFoundError when `input.id` names no integration and `allowMissing` is false.
   */
  private async resolveFields(
    input: IntegrationMessage,
    maskPaths: readonly string[],
    allowMissing: boolean,
  ): Promise<{ existing: StoredIntegration | null; fields: IntegrationFields }> {
    if (input.id === "") {
      if (maskPaths.length > 0) {
        throw InvalidArgumentError.field("update_mask", "only valid when updating; set integration.id to the integration to update");
      }
      return { existing: null, fields: fieldsFromMessage(input) };
    }

    requireId(input.id, "integration.id");
    const existing = await this.store.get(input.id);
    if (existing === null) {
      if (!allowMissing) {
        throw new NotFoundError("integration", input.id, "set allow_missing to create it with this id, or leave integration.id empty to get a generated one");
      }
      // The same request updates the integration once it exists, so its mask must be valid now.
      checkMaskPaths(maskPaths);
      return { existing: null, fields: fieldsFromMessage(input) };
    }

    const fields = applyUpdate(existing, input, maskPaths);
    assertUnreadableSecretsReplaced(existing, fields);
    return { existing, fields };
  }

  /**
   * Returns the integration a TestIntegration request names: a stored one,
   * whose secrets must be readable, or an unsaved one built as
   * ConfigureIntegration with `allow_missing` would store it. An unsaved
   * integration gets the same field checks but no SSRF check, because the
   * test reports the guard's verdict instead of failing.
   */
  private async testTarget(request: TestIntegrationRequest, context: CallContext): Promise<Integration> {
    const maskPaths = request.updateMask?.paths ?? [];
    const target = request.target;
    if (target.case === "integrationId") {
      if (maskPaths.length > 0) {
        throw InvalidArgumentError.field("update_mask", "only valid with integration; remove it to test the stored integration as it is");
      }
      const stored = await this.load(target.value, "integration_id");
      assertSecretsReadable(stored, context.log);
      return stored;
    }
    if (target.case !== "integration") {
      throw InvalidArgumentError.field(
        "integration_id",
        "required: the id of a stored integration, or integration with the fields of an unsaved one",
      );
    }

    const { existing, fields } = await this.resolveFields(target.value, maskPaths, true);
    validated(fields, existing !== null && maskPaths.length === 0);
    const now = new Date();
    return { ...fields, id: target.value.id, createTime: existing?.createTime ?? now, updateTime: now };
  }

  /**
   * Validates the fields of an integration about to be saved, then checks
   * its URLs with the SSRF guard. `wholeUpdate` marks an update without
   * `update_mask`, as {@link validated} takes it.
   */
  private async accepted<T extends IntegrationFields>(fields: T, context: CallContext, wholeUpdate = false): Promise<T> {
    validated(fields, wholeUpdate);
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

/**
 * Throws INVALID_ARGUMENT with every invalid field. With `wholeUpdate`, an
 * update without `update_mask`, a missing required field also gets
 * {@link WHOLE_UPDATE_HINT}, because the caller likely meant to change only
 * the fields it sent.
 */
function validated<T extends Parameters<typeof validateIntegration>[0]>(fields: T, wholeUpdate = false): T {
  const violations = validateIntegration(fields, "integration.");
  if (violations.length > 0) {
    const missingRequired = violations.some((violation) => violation.description.startsWith("required"));
    throw new InvalidArgumentError(violations, wholeUpdate && missingRequired ? WHOLE_UPDATE_HINT : undefined);
  }
  return fields;
}
