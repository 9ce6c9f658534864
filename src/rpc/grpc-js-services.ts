import { fromBinary, toBinary, type DescMessage, type DescService } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { deadlineSlackMs } from "../dispatch/send-deadline.js";
import { LightAbortController } from "../light-abort-controller.js";
import type { UnaryHandler } from "./call-context.js";
import type { CallPipeline, IncomingCall } from "./call-pipeline.js";
import type { ServiceBinding } from "./connect-routes.js";
import { acceptOnlyGrpcProto, answerUnknownMethods, failReadsThroughPipeline } from "./grpc-js-rejections.js";
import { metadataValue, toGrpcJsError } from "./grpc-js-status.js";
import type { RejectedRequests } from "./rejected-requests.js";
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
  /** Logs and counts the requests that grpc-js rejects before a call starts, such as calls to unknown methods. */
  rejections?: RejectedRequests;
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
 * request ids, logs and error details. A request whose message grpc-js
 * cannot read, such as one over `maxRequestBytes`, fails through the
 * pipeline too. The server listens nowhere; the one-port server hands it
 * connections. Fails at start-up when a method has no handler.
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
  const paths = new Set<string>();
  const shutdown = new ShutdownFanOut(options.shutdownSignal);
  const methodsOf = new Map<string, string[]>();

  const services = new Map<DescService, GrpcJsService>();
  for (const { service, method, procedure, handler } of unaryMethods(bindings)) {
    const added = services.get(service) ?? { definition: {}, implementation: {} };
    const path = `/${procedure}`;
    const requestDeserialize = deserializer(method.input);
    added.definition[method.localName] = {
      path,
      requestStream: false,
      responseStream: false,
      requestSerialize: serializer(method.input),
      requestDeserialize,
      responseSerialize: serializer(method.output),
      responseDeserialize: deserializer(method.output),
    };
    added.implementation[method.localName] = unaryImplementation(procedure, handler, pipeline, shutdown);
    failReadsThroughPipeline(requestDeserialize, { procedure, pipeline, maxRequestBytes: options.maxRequestBytes });
    services.set(service, added);
    methodsOf.set(service.typeName, [...(methodsOf.get(service.typeName) ?? []), method.name]);
    paths.add(path);
  }
  for (const { definition, implementation } of services.values()) {
    server.addService(definition, implementation);
  }
  acceptOnlyGrpcProto(server, options.rejections);
  answerUnknownMethods(server, options.rejections, methodsOf);

  return { server, paths };
}

/** One service as grpc-js's `addService` takes it. */
interface GrpcJsService {
  definition: Record<string, grpc.MethodDefinition<unknown, unknown>>;
  implementation: grpc.UntypedServiceImplementation;
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
    return metadataValue(this.call.metadata, name);
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
