import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import { Code, ConnectError, createConnectRouter, createContextKey, createContextValues, type ConnectRouter, type Interceptor } from "@connectrpc/connect";
import type { UniversalHandler, UniversalServerRequest, UniversalServerResponse } from "@connectrpc/connect/protocol";
import { compressionBrotli, compressionGzip, universalRequestFromNodeRequest, universalResponseToNodeResponse } from "@connectrpc/connect-node";
import type { Logger } from "pino";
import { REQUEST_ID_HEADER } from "../observability/request-id.js";
import type { RequestHandler } from "../server/one-port-server.js";
import { firstValue, pathOf } from "../server/request-parts.js";
import type { CallPipeline, IncomingCall } from "./call-pipeline.js";
import { connectRoutes, type JsonOptions, type ServiceBinding } from "./connect-routes.js";
import { errorReply, readErrorReply } from "./error-replies.js";
import { formatPeer, isProcedurePath, protocolOfContentType, unknownMethodMessage, type RejectedRequests, type RpcProtocol } from "./rejected-requests.js";
import { requestTooLarge } from "./request-too-large.js";
import { undecodableError, UndecodableRequest } from "./undecodable-request.js";
import { unaryMethods } from "./unary-methods.js";

type AnyRequest = IncomingMessage | Http2ServerRequest;
type AnyResponse = ServerResponse | Http2ServerResponse;

/** Options of {@link connectNodeHandler}. */
export interface ConnectNodeOptions {
  /** Registers the services that do not run through the pipeline, such as health and reflection. */
  otherRoutes(router: ConnectRouter): void;
  /** Largest request message accepted: the service's MAX_REQUEST_BYTES. */
  maxRequestBytes: number;
  /** Aborts the signal of every call in progress. */
  shutdownSignal?: AbortSignal;
  /** JSON options of every route, which also encode the errors that this handler writes itself. */
  jsonOptions: JsonOptions;
  /** Logs and counts the requests that connect-node rejects before a call starts. */
  rejections?: RejectedRequests;
  /** Logs replies that could not be written. */
  logger: Logger;
}

/** Progress of a request, which an interceptor marks once connect-node starts the call's implementation. */
interface CallProgress {
  started: boolean;
}

const CALL_PROGRESS = createContextKey<CallProgress | undefined>(undefined, { description: "whether the implementation started" });

const markStarted: Interceptor = (next) => (request) => {
  const progress = request.contextValues.get(CALL_PROGRESS);
  if (progress !== undefined) {
    progress.started = true;
  }
  return next(request);
};

/** HTTP statuses with which connect-node rejects a request before choosing a protocol, and the code each stands for. */
const UNNEGOTIATED: ReadonlyMap<number, { code: Code; problem: string }> = new Map([
  [405, { code: Code.Unimplemented, problem: "the HTTP method is not allowed" }],
  [415, { code: Code.InvalidArgument, problem: "the content type is not one of gRPC, gRPC-Web or Connect" }],
  [505, { code: Code.Unimplemented, problem: "the method streams in both directions, which needs HTTP/2" }],
]);

/**
 * Returns a handler that serves the given services and `otherRoutes` with
 * connect-node: gRPC-Web, Connect GET, gRPC on connections not routed to
 * grpc-js, and every service besides the given ones.
 *
 * It does what connect-node's own adapter does, and more for the requests
 * connect-node fails before a call starts. A call to one of the given
 * services whose message cannot be read (too large, undecodable, compressed
 * in an unknown way) goes through the pipeline, as on the other servers. So
 * it is authenticated, logged and counted, and gets the pipeline's error. A
 * request to a path that no route serves, or in a content type or HTTP method
 * that no protocol takes, is logged and counted as a rejected request.
 */
export function connectNodeHandler(bindings: readonly ServiceBinding[], pipeline: CallPipeline, options: ConnectNodeOptions): RequestHandler {
  const router = createConnectRouter({
    acceptCompression: [compressionGzip, compressionBrotli],
    readMaxBytes: options.maxRequestBytes,
    shutdownSignal: options.shutdownSignal,
    jsonOptions: options.jsonOptions,
    interceptors: [markStarted],
  });
  connectRoutes(bindings, pipeline, options.jsonOptions)(router);
  options.otherRoutes(router);

  const pipelineProcedures = new Set(unaryMethods(bindings).map((method) => method.procedure));
  const handlers = new Map<string, UniversalHandler>();
  const methodsOf = new Map<string, string[]>();
  for (const handler of router.handlers) {
    handlers.set(handler.requestPath, handler);
    const service = handler.service.typeName;
    methodsOf.set(service, [...(methodsOf.get(service) ?? []), handler.method.name]);
  }

  /** Returns the reply to send for a request whose implementation did not start. */
  const unstarted = async (handler: UniversalHandler, request: AnyRequest, universal: UniversalServerRequest, reply: UniversalServerResponse) => {
    const procedure = `${handler.service.typeName}/${handler.method.name}`;
    const unnegotiated = reply.body === undefined ? UNNEGOTIATED.get(reply.status) : undefined;
    if (unnegotiated !== undefined) {
      const contentType = universal.header.get("content-type");
      options.rejections?.record({
        ...requestFacts(request, protocolOfContentType(contentType)),
        code: unnegotiated.code,
        httpStatus: reply.status,
        reason: `${unnegotiated.problem}: ${universal.method} with content type ${contentType === null ? "(none)" : JSON.stringify(contentType)}`,
      });
      return reply;
    }
    if (!pipelineProcedures.has(procedure)) {
      return reply;
    }
    const protocol = protocolOfContentType(reply.header?.get("content-type"));
    const replied = await readErrorReply(protocol, reply);
    // connect reports a body that the caller cut off by closing the stream as INTERNAL, which would
    // log a fault of the service at error. The Connect handler reports the same call as CANCELLED.
    const failure = universal.signal.aborted ? new ConnectError("the caller canceled the call", Code.Canceled) : readFailure(replied, options.maxRequestBytes);
    const header = new Headers(reply.header);
    const error = await pipeline
      .runUnary(procedure, undefined, incomingCall(universal, header), () => Promise.reject(failure))
      .then(() => failure, (thrown: unknown) => ConnectError.from(thrown));
    return errorReply(protocol, header, error, options.jsonOptions);
  };

  const rejectUnknownPath = (request: AnyRequest, response: AnyResponse, path: string) => {
    const contentType = firstValue(request.headers["content-type"]);
    const protocol = protocolOfContentType(contentType);
    if (isProcedurePath(path) || protocol !== "connect" || /^application\/connect\+/i.test(contentType ?? "")) {
      options.rejections?.record({
        ...requestFacts(request, protocol),
        code: Code.Unimplemented,
        httpStatus: 404,
        reason: unknownMethodMessage(path, methodsOf) ?? `no method at this path; the services here are ${[...methodsOf.keys()].join(", ")}`,
      });
    }
    response.writeHead(404);
    response.end();
  };

  return (request, response) => {
    const path = pathOf(request);
    const handler = handlers.get(path);
    if (handler === undefined) {
      rejectUnknownPath(request, response, path);
      return;
    }

    const progress: CallProgress = { started: false };
    let universal: UniversalServerRequest;
    try {
      universal = universalRequestFromNodeRequest(request, response, undefined, createContextValues().set(CALL_PROGRESS, progress));
    } catch (error) {
      // connect-node builds a URL from the request's Host header, which an HTTP/1.0 request may leave
      // out and any caller may fill with text that is not a host. Its own adapter lets the error
      // escape the request handler, and the uncaught exception ends the process.
      options.rejections?.record({
        ...requestFacts(request, protocolOfContentType(firstValue(request.headers["content-type"]))),
        code: Code.InvalidArgument,
        httpStatus: 400,
        reason: hostProblem(request) ?? ConnectError.from(error).rawMessage,
      });
      response.writeHead(400);
      response.end();
      return;
    }
    handler(universal)
      .then((reply) => (progress.started ? reply : unstarted(handler, request, universal, reply)))
      .then((reply) => universalResponseToNodeResponse(reply, response))
      .catch((error: unknown) => {
        if (ConnectError.from(error).code === Code.Aborted) {
          return;
        }
        options.logger.warn({ err: error, path }, "failed to write the reply of an RPC");
        response.destroy();
      });
  };
}

/**
 * Returns the error that the pipeline gets for a call whose message
 * connect-node could not read. A message over the limit names
 * MAX_REQUEST_BYTES, and undecodable protobuf is INVALID_ARGUMENT as on the
 * other servers. connect-node reports it as INTERNAL, which blames the
 * service for the caller's bytes.
 */
function readFailure(error: ConnectError, maxRequestBytes: number): ConnectError {
  if (error.code === Code.ResourceExhausted) {
    return requestTooLarge(maxRequestBytes);
  }
  const binaryPrefix = "parse binary: ";
  if (error.code === Code.Internal && error.rawMessage.startsWith(binaryPrefix)) {
    return undecodableError(new UndecodableRequest(error.rawMessage.slice(binaryPrefix.length)));
  }
  return error;
}

function incomingCall(request: UniversalServerRequest, responseHeader: Headers): IncomingCall {
  return {
    server: "connect-node",
    signal: request.signal,
    timeoutMs: () => undefined,
    requestHeader: (name) => request.header.get(name),
    setResponseHeader: (name, value) => responseHeader.set(name, value),
  };
}

/** Returns what is wrong with a request's Host header (`:authority` in HTTP/2), or undefined when it names a valid host. */
function hostProblem(request: AnyRequest): string | undefined {
  const host = firstValue(request.headers[":authority"]) ?? request.headers.host;
  const fix = "send the server's host name or address, and its port, in Host";
  if (host === undefined || host === "") {
    return `the request has no Host header; ${fix}`;
  }
  return URL.canParse(`http://${host}`) ? undefined : `the Host header ${JSON.stringify(host.slice(0, 200))} is not a valid host; ${fix}`;
}

/** Returns the facts of a rejected request that the Node request contains. */
function requestFacts(request: AnyRequest, protocol: RpcProtocol) {
  return {
    path: pathOf(request),
    protocol,
    server: "connect-node",
    requestId: firstValue(request.headers[REQUEST_ID_HEADER]),
    peer: formatPeer(request.socket.remoteAddress, request.socket.remotePort),
  };
}
