import { createRegistry } from "@bufbuild/protobuf";
import type { Logger } from "pino";
import { Health } from "../gen/grpc/health/v1/health_pb.js";
import { ServerReflection as ServerReflectionV1 } from "../gen/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ServerReflectionV1alpha } from "../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { file_smsgateway_v1_errors } from "../gen/smsgateway/v1/errors_pb.js";
import { IntegrationService as IntegrationServiceDesc } from "../gen/smsgateway/v1/integration_service_pb.js";
import { SmsService as SmsServiceDesc } from "../gen/smsgateway/v1/sms_service_pb.js";
import type { Config } from "./config/settings.js";
import { Delivery } from "./delivery/delivery.js";
import { Dispatcher } from "./dispatch/dispatcher.js";
import { followIntegrationChanges } from "./flow/integration-change-follower.js";
import { SendGate } from "./flow/send-gate.js";
import { ServiceMetrics } from "./observability/metrics.js";
import { OutboundGuard } from "./outbound/outbound-guard.js";
import type { Resolver } from "./outbound/resolver.js";
import { CallPipeline } from "./rpc/call-pipeline.js";
import { connectNodeHandler } from "./rpc/connect-node-handler.js";
import type { ServiceBinding } from "./rpc/connect-routes.js";
import { connectUnaryHandler } from "./rpc/connect-unary-handler.js";
import { grpcJsServices } from "./rpc/grpc-js-services.js";
import { RejectedRequests } from "./rpc/rejected-requests.js";
import { EncryptingIntegrationStore } from "./security/encrypting-integration-store.js";
import { checkStoredEncryptionKeys } from "./security/encryption-key-check.js";
import { prepareSecurity } from "./security/security-setup.js";
import { CorsPolicy } from "./server/cors.js";
import { DescriptorIndex } from "./server/descriptor-index.js";
import { createFrontHandler } from "./server/front-handler.js";
import { shutDownGracefully } from "./server/graceful-shutdown.js";
import { HealthStatusBoard, registerHealthService } from "./server/health-service.js";
import { withHttpRoutes } from "./server/http-routes.js";
import { listenError } from "./server/listen-error.js";
import { startServer, type RunningServer } from "./server/one-port-server.js";
import { ReadinessProbe } from "./server/readiness.js";
import { registerReflectionService } from "./server/reflection-service.js";
import { ServiceLifecycle } from "./server/service-lifecycle.js";
import { readTlsFiles } from "./server/tls-files.js";
import { webConsoleRoutes } from "./server/web-console.js";
import { IntegrationService } from "./services/integration-service.js";
import { SmsService } from "./services/sms-service.js";
import { cacheIntegrations } from "./store/integration-cache.js";
import { openConfiguredStore } from "./store/open-configured-store.js";
import { IntegrationTester } from "./tester/integration-tester.js";

/** A running service: its server, and how to stop it. */
export interface App {
  readonly server: RunningServer;
  /** Storage location for logs, with any password removed. */
  readonly storage: string;
  /** Flow control of every send, whose `flowStates` reports each integration's circuit and its sends in flight and waiting. */
  readonly sendGate: SendGate;
  readonly metrics: ServiceMetrics;
  readonly health: HealthStatusBoard;
  /**
   * Shuts down: health turns NOT_SERVING, new calls are rejected, calls in
   * progress get up to `graceMs` (default `SHUTDOWN_GRACE_MS`) to finish and
   * are then cancelled, and storage closes. Later calls return the same promise.
   */
  close(graceMs?: number): Promise<void>;
}

/** Dependencies that tests replace. */
export interface AppOptions {
  /** Resolves gateway host names for the SSRF guard; the operating system's resolver when unset. */
  resolver?: Resolver;
}

/**
 * Opens storage, builds the services and starts listening.
 *
 * @throws ConfigError before anything is opened when the TLS files or the
 *   security settings are invalid or unsafe (see `readTlsFiles` and
 *   `prepareSecurity`), and when the SQLite folder cannot be written,
 *   PostgreSQL cannot be reached, a configured encryption key is not the
 *   one first used under its id (see `checkStoredEncryptionKeys`) or the
 *   port cannot be bound. The message names the setting as the operator
 *   gave it.
 */
export async function startApp(config: Config, logger: Logger, options: AppOptions = {}): Promise<App> {
  const tls = await readTlsFiles(config);
  const security = await prepareSecurity(config, logger);
  const databaseSchema = config.databaseUrl === "" ? undefined : config.databaseSchema;
  const opened = await openConfiguredStore(config, logger, "service");
  const { description, idempotency } = opened;
  try {
    await checkStoredEncryptionKeys(opened.keyChecks, security.encryption, description, logger);
  } catch (error) {
    await opened.store.close().catch((closeError: unknown) => {
      logger.warn({ database: description, err: closeError }, "closing the database failed");
    });
    throw error;
  }
  const encrypted = new EncryptingIntegrationStore(opened.store, security.cipher);
  // Integrations stay in memory, so a send does not query the database for its integration. With
  // PostgreSQL, a LISTEN connection hears the changes of every replica; while it is down, reads go
  // to the database.
  // NOTE: a read through this replica right after another replica's write can return the old row
  // until the notification arrives, normally within milliseconds.
  const store = cacheIntegrations(encrypted, {
    postgres: databaseSchema === undefined ? undefined : { databaseUrl: config.databaseUrl, schema: databaseSchema, description },
    logger,
  });
  const outbound = new OutboundGuard({ allowList: config.outboundAllow, resolver: options.resolver });
  if (config.outboundAllow.entries.length > 0) {
    logger.info({ outboundAllow: config.outboundAllow.toString() }, "SSRF guard lets the OUTBOUND_ALLOW entries through");
  }
  const metrics = new ServiceMetrics({ processMetrics: true });
  const lifecycle = new ServiceLifecycle();
  const dispatcher = new Dispatcher({
    timeoutMs: config.sendTimeoutMs,
    maxResponseBytes: config.maxReplyBytes,
    maxConnectionsPerOrigin: config.gatewayConnections,
    keepAliveTimeoutMs: config.gatewayKeepAliveMs,
    outbound,
    logger,
    metrics,
  });
  const delivery = new Delivery({
    dispatcher,
    idempotencyStore: idempotency,
    settings: {
      maxAttempts: config.sendMaxAttempts,
      attemptTimeoutMs: config.sendAttemptTimeoutMs,
      baseDelayMs: config.retryBaseDelayMs,
      maxDelayMs: config.retryMaxDelayMs,
      retryAfterMaxMs: config.retryAfterMaxMs,
      idempotencyTtlSeconds: config.idempotencyTtlSeconds,
      tokenLifetimeSeconds: config.tokenLifetimeSeconds,
    },
    logger,
    metrics,
  });
  const sendGate = new SendGate({
    defaults: { sendConcurrency: config.sendConcurrency, sendRatePerSecond: config.sendRatePerSecond },
    circuit: {
      failureThreshold: config.circuitFailureThreshold,
      openMs: config.circuitOpenMs,
      halfOpenProbes: config.circuitHalfOpenProbes,
    },
    sendTimeoutMs: config.sendTimeoutMs,
    logger,
  });

  followIntegrationChanges(store, sendGate, logger);
  metrics.observeFlowStates(() => sendGate.flowStates());

  const tester = new IntegrationTester({ outbound, dispatcher, gate: sendGate });
  const integrations = new IntegrationService(store, outbound, metrics, tester);
  const sms = new SmsService(
    integrations,
    delivery,
    sendGate,
    { maxMessages: config.batchMaxMessages, concurrency: config.batchConcurrency, gatewayWaitMaxMs: config.retryAfterMaxMs },
    lifecycle.stoppingSignal,
  );
  const bindings: ServiceBinding[] = [
    { desc: IntegrationServiceDesc, handlers: bindMethods(integrations) },
    { desc: SmsServiceDesc, handlers: bindMethods(sms) },
  ];
  const pipeline = new CallPipeline(logger, { metrics, lifecycle, access: security.access });
  const servedServices = [IntegrationServiceDesc, SmsServiceDesc, Health, ServerReflectionV1, ServerReflectionV1alpha];
  const rejections = new RejectedRequests(logger, servedServices, metrics);
  // SendSmsBatch results carry error details in google.protobuf.Any, and the
  // JSON encoding of an Any needs its message type from this registry.
  // Connect ignores unknown JSON fields by default, so a misspelled
  // `idempotencyKey` would send without a key. The service rejects them.
  const jsonOptions = { registry: createRegistry(file_smsgateway_v1_errors), ignoreUnknownFields: false };
  const grpcJs = grpcJsServices(bindings, pipeline, {
    maxRequestBytes: config.maxRequestBytes,
    shutdownSignal: lifecycle.forceSignal,
    rejections,
  });
  const health = new HealthStatusBoard([IntegrationServiceDesc.typeName, SmsServiceDesc.typeName]);
  const schema = new DescriptorIndex(servedServices, [file_smsgateway_v1_errors]);
  const connectNode = connectNodeHandler(bindings, pipeline, {
    otherRoutes: (router) => {
      registerHealthService(router, health);
      registerReflectionService(router, schema, lifecycle.stoppingSignal);
    },
    maxRequestBytes: config.maxRequestBytes,
    shutdownSignal: lifecycle.forceSignal,
    jsonOptions,
    rejections,
    logger,
  });
  const rpc = connectUnaryHandler(bindings, pipeline, {
    maxRequestBytes: config.maxRequestBytes,
    shutdownSignal: lifecycle.forceSignal,
    jsonOptions,
    fallback: connectNode,
    logger,
    rejections,
  });
  const handler = createFrontHandler({
    rpc: withHttpRoutes([...webConsoleRoutes(logger)], rpc),
    readiness: new ReadinessProbe(store, lifecycle, logger),
    metrics,
    cors: new CorsPolicy(config.corsAllowedOrigins),
    logger,
    loopbackHostsOnly: !security.access.enabled,
  });

  let server: RunningServer;
  try {
    server = await startServer(handler, {
      host: config.host,
      port: config.port,
      tls,
      grpcJs,
      firstRequestTimeoutMs: config.firstRequestTimeoutMs,
      logger,
    });
  } catch (error) {
    await delivery.close();
    await dispatcher.close();
    await store.close();
    throw listenError(error, config);
  }

  // Delivery waits for its idempotency-key clean-up before the connections close.
  const sending = {
    async close() {
      await delivery.close();
      await dispatcher.close();
    },
  };

  let closing: Promise<void> | undefined;
  return {
    server,
    storage: description,
    sendGate,
    metrics,
    health,
    close(graceMs = config.shutdownGraceMs) {
      closing ??= shutDownGracefully(
        { lifecycle, health, server, dispatcher: sending, store, storage: description, logger },
        graceMs,
      );
      return closing;
    },
  };
}

/** Returns the methods of a service object bound to it, keyed by name, for route registration. */
function bindMethods(service: object): Record<string, never> {
  const methods: Record<string, unknown> = {};
  const prototype = Object.getPrototypeOf(service) as object;
  for (const name of Object.getOwnPropertyNames(prototype)) {
    const member = (service as Record<string, unknown>)[name];
    if (name !== "constructor" && typeof member === "function") {
      methods[name] = member.bind(service);
    }
  }
  return methods as Record<string, never>;
}
