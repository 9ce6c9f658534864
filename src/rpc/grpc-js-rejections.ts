import type http2 from "node:http2";
import { Code, ConnectError } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { BaseServerInterceptingCall } from "@grpc/grpc-js/build/src/server-interceptors.js";
import { REQUEST_ID_HEADER, resolveRequestId } from "../observability/request-id.js";
import { isGrpcProtoContentType } from "../server/one-port-server.js";
import { firstValue } from "../server/request-parts.js";
import type { CallPipeline, IncomingCall } from "./call-pipeline.js";
import { metadataValue, toGrpcJsError } from "./grpc-js-status.js";
import { formatPeer, protocolOfContentType, unknownMethodMessage, type RejectedRequests, type RequestRejection } from "./rejected-requests.js";
import { requestTooLarge } from "./request-too-large.js";

// grpc-js replies to several requests before any handler runs, which would
// leave them out of the log and the metrics. The hooks below catch them at the
// private methods of grpc-js 1.14 that send those replies. package.json pins
// grpc-js to 1.14.x, and test/rpc/rejected-requests.test.ts fails when a
// later version stops calling them.

/** The private methods of grpc-js's server that check each request before its call starts. */
interface RequestChecks {
  _verifyContentType(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders): boolean;
  /** `path` is undefined for a CONNECT request, which has no `:path`. */
  _retrieveHandler(path: string | undefined): GrpcJsHandler | null;
}

/** A method as grpc-js's server keeps it. */
interface GrpcJsHandler {
  func: grpc.handleBidiStreamingCall<Buffer, Buffer> | grpc.handleUnaryCall<unknown, unknown>;
  serialize(value: unknown): Buffer;
  deserialize(bytes: Buffer): unknown;
  type: "unary" | "clientStream" | "serverStream" | "bidi";
  path: string;
}

/**
 * Makes the server reply HTTP 415 to every request that is not gRPC with
 * protobuf, and HTTP 405 to every gRPC request whose method is not POST, and
 * logs and counts each such reply as a rejected request. grpc-js takes any
 * content type that starts with `application/grpc`, so a gRPC-Web request on
 * a connection routed to grpc-js ran as native gRPC: its SMS was sent, and
 * the gRPC-Web client could not read the reply. It also takes any HTTP
 * method, so a HEAD, GET or PUT request sent its SMS where connect-node
 * replies 405, and the reply to HEAD lost its body and trailers.
 *
 * NOTE: the service fails to start with a clear message if grpc-js no longer
 * has the private method that this wraps.
 */
export function acceptOnlyGrpcProto(server: grpc.Server, rejections: RejectedRequests | undefined): void {
  const checks = requestChecks(server, "_verifyContentType");
  const verify = checks._verifyContentType.bind(server);
  checks._verifyContentType = (stream, headers) => {
    const contentType = headers["content-type"];
    const otherEncoding = typeof contentType === "string" && !isGrpcProtoContentType(contentType);
    if (otherEncoding || !verify(stream, headers)) {
      reject(stream, headers, {
        code: Code.InvalidArgument,
        httpStatus: 415,
        reason:
          typeof contentType === "string"
            ? `content type ${JSON.stringify(contentType)} is not gRPC with protobuf, the only one served on an HTTP/2 connection ` +
              "whose first request went to grpc-js; send other requests on a connection of their own"
            : "the request has no content type; gRPC requests carry application/grpc",
      });
      return false;
    }
    const method = headers[":method"];
    if (method !== "POST") {
      // The words of connect-node's rejection of the same request.
      reject(stream, headers, {
        code: Code.Unimplemented,
        httpStatus: 405,
        reason: `the HTTP method is not allowed: ${String(method)} with content type ${JSON.stringify(contentType)}; gRPC calls use POST`,
      });
      return false;
    }
    return true;
  };

  const reject = (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, failure: Pick<RequestRejection, "code" | "httpStatus" | "reason">) => {
    const requestId = resolveRequestId(firstValue(headers[REQUEST_ID_HEADER]));
    if (!stream.headersSent) {
      stream.respond({ ":status": failure.httpStatus, [REQUEST_ID_HEADER]: requestId }, { endStream: true });
    }
    const socket = stream.session?.socket;
    const contentType = headers["content-type"];
    rejections?.record({
      ...failure,
      path: firstValue(headers[":path"]) ?? "",
      protocol: protocolOfContentType(typeof contentType === "string" ? contentType : undefined),
      server: "grpc-js",
      requestId,
      peer: formatPeer(socket?.remoteAddress, socket?.remotePort),
    });
  };
}

/**
 * Makes the server reply to a call to a method it does not implement with
 * UNIMPLEMENTED, a message that names the fix and the request id, and logs
 * and counts it as a rejected request. grpc-js's own reply has neither the
 * message nor the id.
 * `methodsOf` lists the methods of the services that grpc-js serves.
 *
 * grpc-js keeps its lookup of each request's method, and a method it does not
 * have gets a handler of its own that fails the call at once, without reading
 * the request. Calls to known methods take no extra step besides the wrapper.
 */
export function answerUnknownMethods(
  server: grpc.Server,
  rejections: RejectedRequests | undefined,
  methodsOf: ReadonlyMap<string, readonly string[]>,
): void {
  const checks = requestChecks(server, "_retrieveHandler");
  const retrieve = checks._retrieveHandler.bind(server);
  checks._retrieveHandler = (path) => retrieve(path) ?? unknownMethodHandler(path ?? "", rejections, methodsOf);
}

function unknownMethodHandler(path: string, rejections: RejectedRequests | undefined, methodsOf: ReadonlyMap<string, readonly string[]>): GrpcJsHandler {
  const reason =
    path === ""
      ? "the request has no path; a gRPC call names its method in :path, such as /smsgateway.v1.SmsService/SendSms"
      : (unknownMethodMessage(path, methodsOf) ??
        `no method ${path.slice(1)} on this HTTP/2 connection: its first request went to grpc-js, which serves only ` +
          `${[...methodsOf.keys()].join(" and ")}; call other services, such as health and reflection, on a connection of their own`);
  const fail: grpc.handleBidiStreamingCall<Buffer, Buffer> = (call) => {
    const requestId = resolveRequestId(metadataValue(call.metadata, REQUEST_ID_HEADER));
    rejections?.record({
      path,
      protocol: "grpc",
      server: "grpc-js",
      code: Code.Unimplemented,
      reason,
      requestId,
      peer: peerOfGrpcJs(call.getPeer()),
    });
    const metadata = new grpc.Metadata();
    metadata.set(REQUEST_ID_HEADER, requestId);
    // The stream's own "error" listener sends the status.
    call.emit("error", Object.assign(new Error(reason), { code: grpc.status.UNIMPLEMENTED, details: reason, metadata }));
  };
  return { func: fail, serialize: (bytes) => bytes as Buffer, deserialize: (bytes) => bytes, type: "bidi", path };
}

/** The method of a grpc-js server whose requests that fail before the call are sent through the pipeline. */
interface ReadFailureRoute {
  procedure: string;
  pipeline: CallPipeline;
  maxRequestBytes: number;
}

/** A status as grpc-js's `sendStatus` takes it. */
type GrpcJsStatus = Pick<grpc.StatusObject, "code" | "details"> & { metadata?: grpc.Metadata | null };

/** The private state of a grpc-js call that {@link failReadsThroughPipeline} reads. */
interface GrpcJsCallState {
  readonly handler: GrpcJsHandler | null;
  readonly metadata: grpc.Metadata;
  readonly metadataSent: boolean;
  readonly cancelled: boolean;
  /** Time of the caller's deadline in milliseconds since the epoch, or Infinity without one. */
  readonly deadline: number;
  /** Whether the handler waits for the next message or the end of the request. grpc-js delivers neither while it is false. */
  isReadPending: boolean;
  sendStatus(status: GrpcJsStatus): void;
}

/** Routes of {@link failReadsThroughPipeline}, keyed by the method's request decoder, which grpc-js keeps as it was given. */
const readFailureRoutes = new WeakMap<object, ReadFailureRoute>();

/** Calls whose status waits for the pipeline. */
const pendingStatuses = new WeakSet<GrpcJsCallState>();

const NEVER_ABORTED = new AbortController().signal;

const { OK, CANCELLED, DEADLINE_EXCEEDED } = grpc.status;

/** Marks the prototype whose `sendStatus` {@link failReadsThroughPipeline} has replaced. */
const HOOKED = Symbol("smsgateway.readFailuresHooked");

/**
 * Registers a method whose calls go through the pipeline when grpc-js fails
 * them before the handler runs, as on the other servers. grpc-js does so when
 * a request is larger than MAX_REQUEST_BYTES, compressed in a way grpc-js
 * cannot read, carries a malformed `grpc-timeout`, or has no message or two.
 * The call is then authenticated, logged and counted, and the caller gets the
 * pipeline's code, message and request id.
 *
 * `deserialize` is the request decoder given to grpc-js for the method.
 *
 * NOTE: this replaces `sendStatus` of grpc-js's private BaseServerInterceptingCall
 * once per process. Every call of every grpc-js server passes through it, and a
 * call that succeeds costs it one comparison.
 */
export function failReadsThroughPipeline(deserialize: object, route: ReadFailureRoute): void {
  readFailureRoutes.set(deserialize, route);
  const prototype = BaseServerInterceptingCall.prototype as unknown as GrpcJsCallState & { [HOOKED]?: true };
  if (prototype[HOOKED] === true) {
    return;
  }
  prototype[HOOKED] = true;
  const sendStatus = prototype.sendStatus;
  prototype.sendStatus = function hookedSendStatus(this: GrpcJsCallState, status) {
    // A call whose handler ran has sent its response headers by now, and the pipeline has logged it.
    if (status.code === OK || this.metadataSent) {
      sendStatus.call(this, status);
      return;
    }
    if (pendingStatuses.has(this)) {
      return;
    }
    const route = this.handler === null ? undefined : readFailureRoutes.get(this.handler.deserialize);
    if (route !== undefined) {
      // grpc-js goes on reading after such a status, such as DEADLINE_EXCEEDED before the request
      // ended. A unary call whose message had arrived would then start its handler when the
      // request ends, and send an SMS for a call that already failed.
      this.isReadPending = false;
    }
    // grpc-js also ends calls with these codes while the handler runs, which logs them itself.
    const duringCall = status.code === CANCELLED || status.code === DEADLINE_EXCEEDED;
    if (route === undefined || duringCall || this.cancelled) {
      sendStatus.call(this, status);
      return;
    }
    // The pipeline settles within microtasks, so no request data or timer of the call runs before the status goes out.
    pendingStatuses.add(this);
    void failThroughPipeline(route, this, status)
      .catch(() => status)
      .then((final) => {
        pendingStatuses.delete(this);
        sendStatus.call(this, final);
      });
  };
}

async function failThroughPipeline(route: ReadFailureRoute, call: GrpcJsCallState, status: GrpcJsStatus): Promise<GrpcJsStatus> {
  const responseHeaders = new grpc.Metadata();
  const incoming: IncomingCall = {
    server: "grpc-js",
    signal: NEVER_ABORTED,
    timeoutMs: () => (Number.isFinite(call.deadline) ? call.deadline - Date.now() : undefined),
    requestHeader: (name) => metadataValue(call.metadata, name),
    setResponseHeader: (name, value) => responseHeaders.set(name, value),
  };
  const failure = readFailure(status, route.maxRequestBytes);
  try {
    await route.pipeline.runUnary(route.procedure, undefined, incoming, () => Promise.reject(failure));
    return status;
  } catch (thrown) {
    const error = toGrpcJsError(ConnectError.from(thrown));
    const metadata = error.metadata ?? new grpc.Metadata();
    metadata.merge(responseHeaders);
    return { code: error.code ?? grpc.status.UNKNOWN, details: error.details ?? error.message, metadata };
  }
}

/**
 * Returns the error for a grpc-js status sent before the handler ran. A
 * message over the limit names MAX_REQUEST_BYTES, as on the other servers.
 * grpc-js fails a malformed `grpc-timeout` or compressed message with
 * INTERNAL, which blames the service for the caller's bytes, so those
 * become INVALID_ARGUMENT.
 */
function readFailure(status: GrpcJsStatus, maxRequestBytes: number): ConnectError {
  if (status.code === grpc.status.RESOURCE_EXHAUSTED) {
    return requestTooLarge(maxRequestBytes);
  }
  if (status.code === grpc.status.INTERNAL) {
    return new ConnectError(status.details, Code.InvalidArgument);
  }
  return new ConnectError(status.details, status.code as number as Code);
}

function requestChecks(server: grpc.Server, method: keyof RequestChecks): RequestChecks {
  const checks = server as unknown as RequestChecks;
  if (typeof checks[method] !== "function") {
    throw new Error(
      `this @grpc/grpc-js has no ${method}, which the service wraps to log and count the requests grpc-js rejects before a call; ` +
        "install the version of package-lock.json with npm ci, or adapt src/rpc/grpc-js-rejections.ts",
    );
  }
  return checks;
}

/** Returns grpc-js's peer, `address:port`, in the form of {@link formatPeer}. */
function peerOfGrpcJs(peer: string): string | undefined {
  const colon = peer.lastIndexOf(":");
  const port = Number(peer.slice(colon + 1));
  return colon <= 0 || !Number.isInteger(port) ? undefined : formatPeer(peer.slice(0, colon), port);
}
