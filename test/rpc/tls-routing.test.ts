import { randomUUID } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { IntegrationService } from "../../gen/smsgateway/v1/integration_service_pb.js";
import {
  SendSmsRequestSchema,
  SendSmsResponseSchema,
  SmsService,
  type SendSmsRequest,
  type SendSmsResponse,
} from "../../gen/smsgateway/v1/sms_service_pb.js";
import { startLocalGateway } from "../../src/tools/local-gateway.js";
import { startTestService, type TestService } from "../helpers/service.js";
import { hasOpenssl, writeTestCertificate } from "../helpers/test-certificate.js";

const certDir = mkdtempSync(path.join(tmpdir(), "smsgateway-tls-"));
let cert: Buffer;
let service: TestService;
let gateway: Awaited<ReturnType<typeof startLocalGateway>>;
let integrationId: string;

describe.skipIf(!hasOpenssl())("TLS with ALPN", () => {
  beforeAll(async () => {
    const { certFile, keyFile } = writeTestCertificate(certDir);
    cert = readFileSync(certFile);
    service = await startTestService({ tlsCertFile: certFile, tlsKeyFile: keyFile });
    gateway = await startLocalGateway({ host: "127.0.0.1", port: 0 }, () => undefined);

    const transport = createConnectTransport({ baseUrl: httpsUrl(), httpVersion: "1.1", nodeOptions: { ca: cert, servername: "localhost" } });
    const { integration } = await createClient(IntegrationService, transport).configureIntegration({
      integration: { baseUrl: `${gateway.url}/sms`, apiKeyHeader: "X-API-KEY", apiKey: "tls-key-0001", defaultSender: "Acme" },
    });
    integrationId = integration?.id ?? "";
  });

  afterAll(async () => {
    await service?.stop();
    gateway?.server.close();
    rmSync(certDir, { recursive: true, force: true });
  });

  function httpsUrl(): string {
    return `https://127.0.0.1:${service.app.server.port}`;
  }

  function servedBy(requestId: string): unknown {
    return service.logLines.find((line) => line.requestId === requestId && line.msg === "rpc finished")?.server;
  }

  test.each([
    { httpVersion: "1.1" as const, expected: "connect-unary" },
    { httpVersion: "2" as const, expected: "connect-unary" },
  ])("Connect over HTTP/$httpVersion", async ({ httpVersion, expected }) => {
    const transport = createConnectTransport({ baseUrl: httpsUrl(), httpVersion, nodeOptions: { ca: cert, servername: "localhost" } });
    const requestId = `tls-${randomUUID()}`;

    const sent = await createClient(SmsService, transport).sendSms(
      { integrationId, to: "+15550002221", content: "over TLS" },
      { headers: { "x-request-id": requestId } },
    );

    expect(sent.id).toMatch(/^msg_/);
    expect(servedBy(requestId)).toBe(expected);
  });

  test("plain HTTP gets 400 and a warning", async () => {
    const response = await fetch(`http://127.0.0.1:${service.app.server.port}/healthz`);
    const body = await response.text();

    expect(response.status).toBe(400);
    expect(body).toMatch(/^This port expects TLS: use https:\/\//);
    const warning = service.logLines.find((line) => line.msg === "rejected a cleartext HTTP connection on the TLS port");
    expect(warning).toMatchObject({ level: 40, remoteAddress: "127.0.0.1", protocol: "http/1.x" });
  });

  test("grpc-js client", async () => {
    const client = new grpc.Client(`127.0.0.1:${service.app.server.port}`, grpc.credentials.createSsl(cert), {
      "grpc.ssl_target_name_override": "localhost",
    });
    const requestId = `tls-${randomUUID()}`;
    const metadata = new grpc.Metadata();
    metadata.set("x-request-id", requestId);
    try {
      const sent = await new Promise<SendSmsResponse | undefined>((resolve, reject) => {
        client.makeUnaryRequest(
          "/smsgateway.v1.SmsService/SendSms",
          (message: SendSmsRequest) => Buffer.from(toBinary(SendSmsRequestSchema, message)),
          (bytes: Buffer) => fromBinary(SendSmsResponseSchema, bytes),
          create(SendSmsRequestSchema, { integrationId, to: "+15550002222", content: "over TLS" }),
          metadata,
          (error, response) => (error ? reject(error) : resolve(response)),
        );
      });

      expect(sent?.id).toMatch(/^msg_/);
      expect(servedBy(requestId)).toBe("grpc-js");
    } finally {
      client.close();
    }
  });
});
