import { connectNodeAdapter } from "@connectrpc/connect-node";
import type { Logger } from "pino";
import { IntegrationService as IntegrationServiceDesc } from "../gen/smsgateway/v1/integration_service_pb.js";
import { SmsService as SmsServiceDesc } from "../gen/smsgateway/v1/sms_service_pb.js";
import type { Config } from "./config/settings.js";
import { Dispatcher } from "./dispatch/dispatcher.js";
import { CallPipeline } from "./rpc/call-pipeline.js";
import { connectRoutes, type ServiceBinding } from "./rpc/connect-routes.js";
import { grpcJsServices } from "./rpc/grpc-js-services.js";
import { startServer, type RunningServer } from "./server/one-port-server.js";
import { IntegrationService } from "./services/integration-service.js";
import { SmsService } from "./services/sms-service.js";
import { CachedIntegrationStore } from "./store/cached-integration-store.js";
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
  const opened = await openStore({ databaseUrl: config.databaseUrl, dataDir: config.dataDir, logger });
  const { description } = opened;
  // The embedded SQLite file belongs to one process, so integrations can stay in memory.
  // NOTE: with PostgreSQL every send reads its integration, because other replicas may change it and
  // nothing yet tells this process.
  const store = config.databaseUrl === "" ? new CachedIntegrationStore(opened.store) : opened.store;
  const dispatcher = new Dispatcher({
    timeoutMs: config.sendTimeoutMs,
    maxResponseBytes: config.maxReplyBytes,
    maxConnectionsPerOrigin: config.gatewayConnections,
    keepAliveTimeoutMs: config.gatewayKeepAliveMs,
    logger,
  });

  const integrations = new IntegrationService(store);
  const sms = new SmsService(integrations, dispatcher);
  const bindings: ServiceBinding[] = [
    { desc: IntegrationServiceDesc, handlers: bindMethods(integrations) },
    { desc: SmsServiceDesc, handlers: bindMethods(sms) },
  ];
  const pipeline = new CallPipeline(logger);
  const routes = connectRoutes(bindings, pipeline);
  const handler = connectNodeAdapter({ routes, readMaxBytes: config.maxRequestBytes });
  const grpcJs = grpcJsServices(bindings, pipeline, { maxRequestBytes: config.maxRequestBytes });

  let server: RunningServer;
  try {
    server = await startServer(handler, {
      host: config.host,
      port: config.port,
      tls: config.tlsCertFile === "" ? undefined : { certFile: config.tlsCertFile, keyFile: config.tlsKeyFile },
      grpcJs,
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
