/**
 * Names of the protocols and targets of the report's rows, which the
 * entries, the rounds and the target checks share.
 */

/** Integrations stored in the second service process. */
export const MANY_INTEGRATIONS = 10_000;
/** Messages in each SendSmsBatch call of the batch rows. */
export const BATCH_SIZE = 100;

export const TARGETS = {
  service: "service",
  serviceWithKey: "service + key",
  manyIntegrations: `service, ${MANY_INTEGRATIONS.toLocaleString("en-US")} integrations`,
  batch: `service, batch of ${BATCH_SIZE}`,
  grpcRelay: "grpc-js relay",
  connectRelay: "connect relay",
} as const;

export const PROTOCOLS = { grpc: "gRPC", connectHttp2: "Connect, HTTP/2", connectHttp1: "Connect, HTTP/1.1" } as const;
