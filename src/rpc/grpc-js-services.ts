import { fromBinary, toBinary, type DescMessage, type DescService } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type http2 from "node:http2";
import * as grpc from "@grpc/grpc-js";
import { deadlineSlackMs } from "../dispatch/send-deadline.js";
import { LightAbortController } from "../light-abort-controller.js";
import { isGrpcProtoContentType } from "../server/one-port-server.js";
import type { UnaryHandler } from "./call-context.js";
import type { CallPipeline, IncomingCall } from "./call-pipeline.js";
import type { ServiceBinding } from "./connect-routes.js";
import { toGrpcJsError } from "./grpc-js-status.js";
import { ShutdownFanOut, type ShutdownAbortable } from "./shutdown-fan-out.js";
import { rejectUndecodable, UndecodableRequest } from "./undecodable-request.js";
import { unaryMethods } from "./unary-methods.js";

/** Options of {@link grpcJsServices}. */
export interface GrpcJsServicesOptions {
  /** Largest request message accepted; larger ones fail with RESOURCE_EXHAUSTED, as on Connect. */
  maxRequestBytes: number;
  /**
   * Aborts the signal of every call in progress, as `shutdownSignal` does for
   * Connect's handlers: each handler then ends its call with an error code
   * before the connections close.
   */
  shutdownSignal?: AbortSignal;
}

/** A grpc-js server with the services added, and the request paths it implements. */
export interface GrpcJsServices {
  server: grpc.Server;
  /** Paths such as `/smsgateway.v1.SmsService/SendSms`. */
  paths: ReadonlySet<string>;
}

/**
 * Returns a grpc-js server that implements the given services, each method
 * running through the pipeline like its Connect route: the same handlers,
 * request ids, logs and error details. The server listens nowhere; the
 * one-port server hands it connections. Fails at start-up when a method has
 * no handler.
 */
export function grpcJsServices(
  bindings: readonly ServiceBinding[],
  pipeline: CallPipeline,
  options: GrpcJsServicesOptions,
): GrpcJsServices {
  const server = new grpc.Server({
    "grpc.max_receive_message_length": options.maxRequestBytes,
    // Channelz counts every call for a debugging service that this server does not offer.
    "grpc.enable_channelz": 0,
  });
  acceptOnlyGrpcProto(server);
  const paths = new Set<string>();
  const shutdown = new ShutdownFanOut(options.shutdownSignal);

  const services = new Map<DescService, GrpcJsService>();
  for (const { service, method, procedure, handler } of unaryMethods(bindings)) {
    const added = services.get(service) ?? { definition: {}, implementation: {} };
    const path = `/${procedure}`;
    added.definition[method.localName] = {
      path,
      requestStream: false,
      responseStream: false,
      requestSerialize: serializer(method.input),
      requestDeserialize: deserializer(method.input),
      responseSerialize: serializer(method.output),
      responseDeserialize: deserializer(method.output),
    };
    added.implementation[method.localName] = unaryImplementation(procedure, handler, pipeline, shutdown);
    services.set(service, added);
    paths.add(path);
  }
  for (const { definition, implementation } of services.values()) {
    server.addService(definition, implementation);
  }

  return { server, paths };
}

/** One service as grpc-js's `addService` takes it. */
interface GrpcJsService {
  definition: Record<string, grpc.MethodDefinition<unknown, unknown>>;
  implementation: grpc.UntypedServiceImplementation;
}

/** The part of grpc-js's server that checks each request's content type before the call starts. */
interface ContentTypeCheck {
  _verifyContentType(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): boolean;
}

/**
 * Makes the server reply HTTP 415 to every request that is not gRPC with
 * protobuf. grpc-js takes any content type that starts with
 * `application/grpc`, so a gRPC-Web request on a connection routed to grpc-js
 * ran as native gRPC: its SMS was sent, and the gRPC-Web client could not read
 * the reply.
 *
 * NOTE: this wraps `_verifyContentType`, a private method of grpc-js 1.14,
 * which package.json pins to 1.14.x. test/rpc/one-port-routing.test.ts fails
 * if a later grpc-js stops calling it, and the service fails to start with a
 * clear message if the method is gone.
 */
function acceptOnlyGrpcProto(server: grpc.Server): void {
  const check = server as unknown as ContentTypeCheck;
  if (typeof check._verifyContentType !== "function") {
    throw new Error(
      "this @grpc/grpc-js has no _verifyContentType, which the service wraps to reject requests other than gRPC with protobuf; " +
        "install the version of package-lock.json with npm ci, or adapt acceptOnlyGrpcProto in src/rpc/grpc-js-services.ts",
    );
  }
  const verify = check._verifyContentType.bind(server);
  check._verifyContentType = (stream, headers) => {
    const contentType = headers["content-type"];
    if (typeof contentType === "string" && !isGrpcProtoContentType(contentType)) {
      stream.respond({ ":status": 415 }, { endStream: true });
      return false;
    }
    return verify(stream, headers);
  };
}

function unaryImplementation(
  procedure: string,
  handler: UnaryHandler<unknown, unknown>,
  pipeline: CallPipeline,
  shutdown: ShutdownFanOut,
): grpc.handleUnaryCall<unknown, unknown> {
  return (call, callback) => {
    const incoming = new GrpcJsIncomingCall(call, shutdown);
    const request = call.request;
    const run =
      request instanceof UndecodableRequest
        ? pipeline.runUnary(procedure, request, incoming, rejectUndecodable)
        : pipeline.runUnary(procedure, request, incoming, handler);

    run.then(
      (response) => {
        incoming.finish();
        callback(null, response);
      },
      (error: unknown) => {
        incoming.finish();
        callback(toGrpcJsError(ConnectError.from(error)));
      },
    );
  };
}

function serializer(schema: DescMessage): (message: unknown) => Buffer {
  return (message) => {
    const bytes = toBinary(schema, message as never);
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  };
}

/**
 * Returns a decoder that never throws. grpc-js would fail the call with
 * INTERNAL outside the pipeline, so the error travels to the method as an
 * {@link UndecodableRequest} instead.
 */
function deserializer(schema: DescMessage): (bytes: Buffer) => unknown {
  return (bytes) => {
    try {
      return fromBinary(schema, bytes);
    } catch (error) {
      return new UndecodableRequest(error);
    }
  };
}

/**
 * A grpc-js unary call adapted to the pipeline. Its signal aborts when the
 * caller cancels, the deadline passes or `shutdownSignal` aborts. Response
 * headers are collected and sent once, by {@link finish}, before the reply.
 */
class GrpcJsIncomingCall implements IncomingCall, ShutdownAbortable {
  readonly server = "grpc-js";
  readonly signal: AbortSignal;
  private readonly controller = new LightAbortController();
  private readonly onCancelled: () => void;
  private responseHeaders: grpc.Metadata | undefined;

  constructor(
    private readonly call: grpc.ServerUnaryCall<unknown, unknown>,
    private readonly shutdown: ShutdownFanOut,
  ) {
    const controller = this.controller;
    this.signal = controller.signal;
    // grpc-js ends the call when its deadline passes, which also fires "cancelled".
    const budgetMs = this.timeoutMs();
    this.onCancelled = () => {
      const remainingMs = this.timeoutMs();
      // The client resets the call when its own deadline timer fires, a moment before the server's would.
      const deadlinePassed =
        budgetMs !== undefined && remainingMs !== undefined && remainingMs <= deadlineSlackMs(budgetMs);
      controller.abort(
        deadlinePassed
          ? new ConnectError("the caller's deadline passed", Code.DeadlineExceeded)
          : new ConnectError("the caller canceled the call", Code.Canceled),
      );
    };
    call.once("cancelled", this.onCancelled);
    shutdown.add(this);
  }

  /** Aborts the call's signal with the shutdown's reason. */
  abortForShutdown(reason: unknown): void {
    this.controller.abort(reason);
  }

  timeoutMs(): number | undefined {
    const deadline = this.call.getDeadline();
    const at = deadline instanceof Date ? deadline.getTime() : deadline;
    return Number.isFinite(at) ? at - Date.now() : undefined;
  }

  requestHeader(name: string): string | null {
    const [value] = this.call.metadata.get(name);
    if (value === undefined) {
      return null;
    }
    return typeof value === "string" ? value : value.toString("latin1");
  }

  setResponseHeader(name: string, value: string): void {
    this.responseHeaders ??= new grpc.Metadata();
    this.responseHeaders.set(name, value);
  }

  /**
   * Sends the collected response headers, and stops listening for the
   * shutdown signal and for "cancelled", which grpc-js also fires when the
   * stream closes after a reply.
   */
  finish(): void {
    this.call.removeListener("cancelled", this.onCancelled);
    this.shutdown.delete(this);
    if (this.responseHeaders !== undefined && !this.call.cancelled) {
      this.call.sendMetadata(this.responseHeaders);
    }
  }
}
