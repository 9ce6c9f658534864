import { connectNodeAdapter } from "@connectrpc/connect-node";
import type { Logger } from "pino";
import { IntegrationService as IntegrationServiceDesc } from "../gen/smsgateway/v1/integration_service_pb.js";
import { SmsService as SmsServiceDesc } from "../gen/smsgateway/v1/sms_service_pb.js";
import type { Config } from "./config/settings.js";
import { Dispatcher } from "./dispatch/dispatcher.js";
import { OutboundGuard } from "./outbound/outbound-guard.js";
import type { Resolver } from "./outbound/resolver.js";
import { SendGate } from "./flow/send-gate.js";
import { CallPipeline } from "./rpc/call-pipeline.js";
import { connectRoutes } from "./rpc/connect-routes.js";
import { withHttpRoutes } from "./server/http-routes.js";
import { EncryptingIntegrationStore } from "./security/encrypting-integration-store.js";
import { prepareSecurity } from "./security/security-setup.js";
import { startServer, type RunningServer } from "./server/one-port-server.js";
import { webConsoleRoutes } from "./server/web-console.js";
import { IntegrationService } from "./services/integration-service.js";
import { SmsService } from "./services/sms-service.js";
import { openStore } from "./store/open-store.js";

/** A running service: its server, and how to stop it. */
export interface App {
  readonly server: RunningServer;
  /** Storage location for logs, with any password removed. */
  readonly storage: string;
  /** Flow control of every send, whose `flowStates` reports each integration's circuit. */
  readonly sendGate: SendGate;
  /** Stops taking calls, waits up to `graceMs` for calls in progress, then closes storage. */
  close(graceMs?: number): Promise<void>;
}

/** Dependencies that tests replace. */
export interface AppOptions {
  /** Resolves gateway host names for the SSRF guard; the operating system's resolver when unset. */
  resolver?: Resolver;
}

const DEFAULT_CLOSE_GRACE_MS = 5_000;

/**
 * Opens storage, builds the services and starts listening.
 *
 * @throws ConfigError before anything is opened when the security settings
 *   are invalid or unsafe (see `prepareSecurity`).
 */
export async function startApp(config: Config, logger: Logger, options: AppOptions = {}): Promise<App> {
  const security = await prepareSecurity(config, logger);
  const opened = await openStore({ databaseUrl: config.databaseUrl, dataDir: config.dataDir, logger });
  const { description } = opened;
  const store = new EncryptingIntegrationStore(opened.store, security.cipher);
  const outbound = new OutboundGuard({ allowList: config.outboundAllow, resolver: options.resolver });
  if (config.outboundAllow.entries.length > 0) {
    logger.info({ outboundAllow: config.outboundAllow.toString() }, "SSRF guard lets the OUTBOUND_ALLOW entries through");
  }
  const dispatcher = new Dispatcher({
    timeoutMs: config.sendTimeoutMs,
    maxResponseBytes: config.maxReplyBytes,
    maxConnectionsPerOrigin: config.gatewayConnections,
    keepAliveTimeoutMs: config.gatewayKeepAliveMs,
    outbound,
    logger,
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

  const integrations = new IntegrationService(store, outbound);
  const sms = new SmsService(integrations, dispatcher, sendGate);
  const routes = connectRoutes(
    [
      { desc: IntegrationServiceDesc, handlers: bindMethods(integrations) },
      { desc: SmsServiceDesc, handlers: bindMethods(sms) },
    ],
    new CallPipeline(logger, security.access),
  );
  const handler = withHttpRoutes(
    [...webConsoleRoutes(logger)],
    connectNodeAdapter({ routes, readMaxBytes: config.maxRequestBytes }),
  );

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
    sendGate,
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
