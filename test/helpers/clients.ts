import { create, createRegistry, fromBinary, toBinary, type DescMethodUnary, type DescService } from "@bufbuild/protobuf";
import { ConnectError, createClient, type Client, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { findTrailerError } from "@connectrpc/connect/protocol-grpc";
import * as grpc from "@grpc/grpc-js";
import { file_smsgateway_v1_errors } from "../../gen/smsgateway/v1/errors_pb.js";

/** A client flavour the end-to-end tests run every RPC through. */
export interface ClientKind {
  name: string;
  create<S extends DescService>(service: S, baseUrl: string): { client: Client<S>; close(): void };
}

function connectKind(name: string, make: (baseUrl: string) => Transport): ClientKind {
  return {
    name,
    create: (service, baseUrl) => ({ client: createClient(service, make(baseUrl)), close: () => undefined }),
  };
}

/**
 * A client over `@grpc/grpc-js` with the same shape as a Connect client.
 * grpc-js errors are turned back into ConnectErrors (code, message and the
 * details from `grpc-status-details-bin`), so tests assert the same way for
 * every client.
 */
const grpcJsKind: ClientKind = {
  name: "grpc-js (gRPC over HTTP/2)",
  create<S extends DescService>(service: S, baseUrl: string) {
    const grpcClient = new grpc.Client(new URL(baseUrl).host, grpc.credentials.createInsecure());
    const client: Record<string, unknown> = {};
    for (const method of service.methods) {
      if (method.methodKind === "unary") {
        client[method.localName] = (request: unknown, options?: { headers?: Record<string, string>; timeoutMs?: number }) =>
          callUnary(grpcClient, method as DescMethodUnary, request, options);
      }
    }
    return { client: client as Client<S>, close: () => grpcClient.close() };
  },
};

function callUnary(
  client: grpc.Client,
  method: DescMethodUnary,
  request: unknown,
  options: { headers?: Record<string, string>; timeoutMs?: number } | undefined,
): Promise<unknown> {
  const metadata = new grpc.Metadata();
  for (const [name, value] of Object.entries(options?.headers ?? {})) {
    metadata.set(name, value);
  }
  const callOptions: grpc.CallOptions = options?.timeoutMs === undefined ? {} : { deadline: Date.now() + options.timeoutMs };

  return new Promise((resolve, reject) => {
    client.makeUnaryRequest(
      `/${method.parent.typeName}/${method.name}`,
      (message: unknown) => Buffer.from(toBinary(method.input, create(method.input, message as never))),
      (bytes: Buffer) => fromBinary(method.output, bytes),
      request,
      metadata,
      callOptions,
      (error, response) => {
        if (error) {
          reject(grpcErrorToConnectError(error));
        } else {
          resolve(response);
        }
      },
    );
  });
}

function grpcErrorToConnectError(error: grpc.ServiceError): ConnectError {
  const headers = new Headers();
  headers.set("grpc-status", String(error.code));
  headers.set("grpc-message", encodeURIComponent(error.details));
  const details = error.metadata.get("grpc-status-details-bin")[0];
  if (details !== undefined) {
    headers.set("grpc-status-details-bin", Buffer.from(details as Buffer).toString("base64").replace(/=+$/, ""));
  }
  return findTrailerError(headers) ?? new ConnectError(error.details, error.code as number);
}

/** Every client the end-to-end tests use: Connect (protobuf and JSON), gRPC-Web and native gRPC. */
export const CLIENT_KINDS: readonly ClientKind[] = [
  connectKind("Connect over HTTP/1.1", (baseUrl) => createConnectTransport({ baseUrl, httpVersion: "1.1" })),
  connectKind("Connect over HTTP/2", (baseUrl) => createConnectTransport({ baseUrl, httpVersion: "2" })),
  // Browsers use Connect with JSON by default, which needs the error detail types to encode an Any.
  connectKind("Connect JSON over HTTP/1.1", (baseUrl) =>
    createConnectTransport({
      baseUrl,
      httpVersion: "1.1",
      useBinaryFormat: false,
      jsonOptions: { registry: createRegistry(file_smsgateway_v1_errors) },
    }),
  ),
  connectKind("gRPC-Web over HTTP/1.1", (baseUrl) => createGrpcWebTransport({ baseUrl, httpVersion: "1.1" })),
  connectKind("gRPC-Web over HTTP/2", (baseUrl) => createGrpcWebTransport({ baseUrl, httpVersion: "2" })),
  grpcJsKind,
];

/** Awaits an RPC that must fail and returns its error as a ConnectError. */
export async function rejection(promise: Promise<unknown>): Promise<ConnectError> {
  try {
    await promise;
  } catch (error) {
    return ConnectError.from(error);
  }
  throw new Error("expected the call to fail");
}
