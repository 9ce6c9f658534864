import { once } from "node:events";
import { createServer } from "node:net";

import { toJsonString } from "@bufbuild/protobuf";
import type { Client } from "@connectrpc/connect";

import type { Integration } from "../../gen/smsgateway/v1/integration_pb.js";
import {
  IntegrationService,
  TestIntegrationResponseSchema,
  type TestIntegrationResponse,
} from "../../gen/smsgateway/v1/integration_service_pb.js";
import { CLIENT_KINDS, type ClientKind } from "../helpers/clients.js";
import { ScriptedGateway } from "../helpers/scripted-gateway.js";
import { startTestService, type TestService } from "../helpers/service.js";
import { StubResolver } from "../helpers/stub-resolver.js";

export const API_KEY = "tester-api-key-5e1b9d";
export const SECRET_KEY = "tester-secret-c47a02";
export const TOKEN = "tester-token-83f6aa";

/** The fields of a valid integration, without its URLs. */
export const CREDENTIALS = {
  apiKeyHeader: "X-API-KEY",
  apiKey: API_KEY,
  secretKeyHeader: "X-SECRET-KEY",
  secretKey: SECRET_KEY,
  defaultSender: "Acme",
};

/** Connect over HTTP/1.1 and native gRPC, for the tests that need not run through every client. */
export const CONNECT_AND_GRPC: readonly ClientKind[] = CLIENT_KINDS.filter(
  (kind) => kind.name === "Connect over HTTP/1.1" || kind.name.startsWith("grpc-js"),
);

let pathCount = 0;

/** Returns a path that no other test uses, so each test reads only its own gateway requests. */
export function uniquePath(name: string): string {
  pathCount += 1;
  return `/${name}-${pathCount}`;
}

/** Integration fields as tests set them. */
export type IntegrationFields = Partial<Omit<Integration, "$typeName" | "createTime" | "updateTime">>;

/** Returns the fields of an integration on `gateway` that fetches a token from `authPath` and sends it as `X-Token`. */
export function tokenIntegration(gateway: ScriptedGateway, path: string, authPath: string): IntegrationFields {
  return { baseUrl: gateway.url(path), authenticateByToken: true, authUrl: gateway.url(authPath), tokenKey: "X-Token" };
}

/** Returns the whole response as JSON text, to search it for secrets. */
export function responseText(response: TestIntegrationResponse): string {
  return toJsonString(TestIntegrationResponseSchema, response);
}

/** Stores an integration through the API and returns its id. */
export async function storeIntegration(
  client: Client<typeof IntegrationService>,
  integration: IntegrationFields,
): Promise<string> {
  const { integration: stored } = await client.configureIntegration({ integration: { ...CREDENTIALS, ...integration } });
  return stored?.id ?? "";
}

/** The service, a scripted gateway and a trap, as the TestIntegration tests use them. */
export interface TesterSetup {
  service: TestService;
  /** Resolves the service's host names; names not set fail with ENOTFOUND. */
  resolver: StubResolver;
  gateway: ScriptedGateway;
  /** Port of the gateway on 127.0.0.1, and of the trap on 127.0.0.2. */
  gatewayPort: string;
  /** Connections the trap received, which must stay 0. */
  trapConnections(): number;
  stop(): Promise<void>;
}

/**
 * Starts the service with a stub resolver, a scripted gateway on 127.0.0.1,
 * and a trap on 127.0.0.2 at the gateway's port.
 *
 * The service allows 127.0.0.1 through the SSRF guard, so 127.0.0.2 plays a
 * blocked address: a check that wrongly passed would still stay on the
 * machine, and the trap would count the connection.
 */
export async function startTesterSetup(): Promise<TesterSetup> {
  const resolver = new StubResolver();
  const service = await startTestService({}, { resolver });
  const gateway = await ScriptedGateway.start();
  const gatewayPort = new URL(gateway.url()).port;

  let connections = 0;
  const trap = createServer((socket) => {
    connections++;
    socket.destroy();
  });
  trap.listen(Number(gatewayPort), "127.0.0.2");
  await once(trap, "listening");

  return {
    service,
    resolver,
    gateway,
    gatewayPort,
    trapConnections: () => connections,
    async stop() {
      await service.stop();
      await gateway.close();
      trap.close();
    },
  };
}
