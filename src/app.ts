import { connectNodeAdapter } from "@connectrpc/connect-node";
import type { Logger } from "pino";
import { IntegrationService as IntegrationServiceDesc } from "../gen/smsgateway/v1/integration_service_pb.js";
import { SmsService as SmsServiceDesc } from "../gen/smsgateway/v1/sms_service_pb.js";
import type { Config } from "./config/settings.js";
import { Delivery } from "./delivery/delivery.js";
import { Dispatcher } from "./dispatch/dispatcher.js";
import { CallPipeline } from "./rpc/call-pipeline.js";
import { connectRoutes } from "./rpc/connect-routes.js";
import { startServer, type RunningServer } from "./server/one-port-server.js";
import { IntegrationService } from "./services/integration-service.js";
import { SmsService } from "./services/sms-service.js";
import { openStore } from "./store/open-store.js";

/** A running service: its server, and how to stop it. */
export interface App {
  readonly server: RunningServer;
  /** Storage location for logs, with any password removed. */
  readonly storage: string;
  /** Stops taking calls, waits up to `graceMs` for calls in progress, then closes storage. */
  close(graceMs?: number): Promise<void>;
}

const DEFAULT_CLOSE_GRACE_MS = 5_000;

/** Opens storage, builds the services and starts listening. */
export async function startApp(config: Config, logger: Logger): Promise<App> {
  const { store, idempotency, description } = await openStore({ databaseUrl: config.databaseUrl, dataDir: config.dataDir, logger });
  const dispatcher = new Dispatcher({
    timeoutMs: config.sendTimeoutMs,
    maxResponseBytes: config.maxReplyBytes,
    maxConnectionsPerOrigin: config.gatewayConnections,
    keepAliveTimeoutMs: config.gatewayKeepAliveMs,
    logger,
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
  });

  const integrations = new IntegrationService(store);
  const sms = new SmsService(integrations, delivery);
  const routes = connectRoutes(
    [
      { desc: IntegrationServiceDesc, handlers: bindMethods(integrations) },
      { desc: SmsServiceDesc, handlers: bindMethods(sms) },
    ],
    new CallPipeline(logger),
  );
  const handler = connectNodeAdapter({ routes, readMaxBytes: config.maxRequestBytes });

  let server: RunningServer;
  try {
    server = await startServer(handler, {
      host: config.host,
      port: config.port,
      tls: config.tlsCertFile === "" ? undefined : { certFile: config.tlsCertFile, keyFile: config.tlsKeyFile },
    });
  } catch (error) {
    await dispatcher.close();
    await store.close();
    throw error;
  }

  return {
    server,
    storage: description,
    async close(graceMs = DEFAULT_CLOSE_GRACE_MS) {
      await server.close(graceMs);
      await delivery.close();
      await dispatcher.close();
      await store.close();
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
