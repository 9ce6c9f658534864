import type { IncomingMessage, ServerResponse } from "node:http";
import http2, { type Http2ServerRequest, type Http2ServerResponse } from "node:http2";
import { fromBinary, fromJsonString, toBinary, toJsonString, type DescMessage, type JsonReadOptions, type JsonWriteOptions } from "@bufbuild/protobuf";
import { MethodOptions_IdempotencyLevel } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { compressionNegotiate, type Compression } from "@connectrpc/connect/protocol";
import {
  codeToHttpStatus,
  codeToString,
  contentTypeUnaryJson,
  contentTypeUnaryProto,
  errorToJsonBytes,
  headerUnaryAcceptEncoding,
  headerUnaryEncoding,
  parseContentType,
  parseTimeout,
} from "@connectrpc/connect/protocol-connect";
import { compressionBrotli, compressionGzip } from "@connectrpc/connect-node";
import type { Logger } from "pino";
import { LightAbortController } from "../light-abort-controller.js";
import { REQUEST_ID_HEADER } from "../observability/request-id.js";
import type { RequestHandler } from "../server/one-port-server.js";
import { pathOf } from "../server/request-parts.js";
import type { UnaryHandler } from "./call-context.js";
import type { CallPipeline, IncomingCall } from "./call-pipeline.js";
import type { ServiceBinding } from "./connect-routes.js";
import { capDeadlineHeaders } from "./deadline-headers.js";
import { locateJsonError } from "./json-error-path.js";
import { formatPeer, unknownMethodMessage, type RejectedRequests } from "./rejected-requests.js";
import { requestTooLarge } from "./request-too-large.js";
import { ShutdownFanOut, type ShutdownAbortable } from "./shutdown-fan-out.js";
import { rejectUndecodable, UndecodableRequest } from "./undecodable-request.js";
import { unaryMethods } from "./unary-methods.js";

type AnyRequest = IncomingMessage | Http2ServerRequest;
type AnyResponse = ServerResponse | Http2ServerResponse;

/** Options of {@link connectUnaryHandler}. */
export interface ConnectUnaryOptions {
  /**
   * Largest request message accepted, before and after decompression: the
   * service's MAX_REQUEST_BYTES. Larger ones fail with RESOURCE_EXHAUSTED.
   */
  maxRequestBytes: number;
  /** Aborts the signal of every call in progress, as connect-node's `shutdownSignal` does. */
  shutdownSignal?: AbortSignal;
  /** The JSON options connect-node is given, so both encode messages and error details alike. */
  jsonOptions?: Partial<JsonReadOptions & JsonWriteOptions>;
  /** Serves every request this handler does not take. */
  fallback: RequestHandler;
  /** Logs replies that could not be written. */
  logger: Logger;
  /** Logs and counts the requests that the handler rejects before a call starts, such as calls to unknown methods. */
  rejections?: RejectedRequests;
}

/** Compression the handler accepts and offers, as connect-node does by default. */
const COMPRESSIONS: Compression[] = [compressionGzip, compressionBrotli];

/** Responses smaller than this go uncompressed, connect-node's default `compressMinBytes`. */
const COMPRESS_MIN_BYTES = 1024;

/** The Connect protocol has no limit of its own on `Connect-Timeout-Ms` beyond its ten digits. */
const MAX_TIMEOUT_MS = Number.MAX_SAFE_INTEGER;

interface UnaryRoute {
  procedure: string;
  handler: UnaryHandler<unknown, unknown>;
  input: DescMessage;
  output: DescMessage;
  /** True for a method without side effects, which Connect also serves over GET. */
  allowsGet: boolean;
}

/**
 * Returns a handler that serves Connect unary calls (POST with
 * `application/proto` or `application/json`) to the given services itself,
 * through the pipeline, and hands every other request to `fallback`:
 * Connect GET requests, gRPC, gRPC-Web, other services and other paths.
 *
 * It follows the Connect protocol as connect-node's handler does, with the
 * same content types, timeout header, compression, error bodies and HTTP
 * status codes, and it uses connect's own protocol helpers for each. It
 * leaves out the per-call machinery of the general handler: a `Headers` copy
 * of the request headers, a parsed URL, async iterators over the body and two
 * native abort controllers. Together they cost more CPU than the service's
 * own work for a send.
 */
export function connectUnaryHandler(
  bindings: readonly ServiceBinding[],
  pipeline: CallPipeline,
  options: ConnectUnaryOptions,
): RequestHandler {
  const routes = new Map<string, UnaryRoute>();
  const methodsOf = new Map<string, string[]>();
  for (const { service, method, procedure, handler } of unaryMethods(bindings)) {
    const allowsGet = method.idempotency === MethodOptions_IdempotencyLevel.NO_SIDE_EFFECTS;
    routes.set(`/${procedure}`, { procedure, handler, input: method.input, output: method.output, allowsGet });
    methodsOf.set(service.typeName, [...(methodsOf.get(service.typeName) ?? []), method.name]);
  }
  const shutdown = new ShutdownFanOut(options.shutdownSignal);
  const readOptions = { ...options.jsonOptions, ignoreUnknownFields: options.jsonOptions?.ignoreUnknownFields ?? true };

  const serve = async (route: UnaryRoute, binary: boolean, request: AnyRequest, response: AnyResponse) => {
    const timeout = parseTimeout(headerValue(request, "connect-timeout-ms"), MAX_TIMEOUT_MS);
    const compression = compressionNegotiate(
      COMPRESSIONS,
      headerValue(request, "content-encoding"),
      headerValue(request, "accept-encoding"),
      headerUnaryAcceptEncoding,
    );
    const call = new ConnectUnaryCall(request, response, shutdown, timeout.error === undefined ? timeout.timeoutMs : undefined);

    // Errors found before the message is decoded travel through the pipeline
    // too, so that such calls are authenticated, logged and counted.
    let message: unknown;
    let handler = route.handler;
    let bodyRead = false;
    try {
      if (compression.error !== undefined) {
        throw compression.error;
      }
      if (timeout.error !== undefined) {
        throw new ConnectError(`${timeout.error.rawMessage}; Connect-Timeout-Ms takes whole milliseconds of up to 10 digits, such as 5000`, timeout.error.code);
      }
      const bytes = await readMessageBytes(request, options.maxRequestBytes, call.signal, compression.request);
      bodyRead = true;
      message = decodeMessage(route.input, binary, bytes, readOptions);
      if (message instanceof UndecodableRequest) {
        handler = rejectUndecodable as UnaryHandler<unknown, unknown>;
      }
    } catch (error) {
      handler = () => Promise.reject(error);
    }

    let status = 200;
    let contentType = binary ? contentTypeUnaryProto : contentTypeUnaryJson;
    let body: Uint8Array;
    try {
      const output = await pipeline.runUnary(route.procedure, message, call, handler);
      body = binary ? toBinary(route.output, output as never) : Buffer.from(toJsonString(route.output, output as never, options.jsonOptions));
    } catch (thrown) {
      const error = ConnectError.from(thrown);
      status = codeToHttpStatus(error.code);
      contentType = contentTypeUnaryJson;
      error.metadata.forEach((value, name) => call.setResponseHeader(name, value));
      body = errorToJsonBytes(error, options.jsonOptions ?? {});
    } finally {
      call.finish();
    }

    if (compression.response !== null && body.byteLength >= COMPRESS_MIN_BYTES) {
      body = await compression.response.compress(body);
      call.setResponseHeader(headerUnaryEncoding, compression.response.name);
    }
    // An error found before the body was read, or a body over the limit, leaves bytes unread.
    if (bodyRead || call.signal.aborted) {
      call.respond(status, contentType, body);
    } else {
      await replyAfterBody(request, options.maxRequestBytes, () => call.respond(status, contentType, body));
    }
  };

  const reject = (request: AnyRequest, response: AnyResponse, path: string, mistake: CallMistake) => {
    options.rejections?.record({
      path,
      protocol: "connect",
      server: "connect-unary",
      code: mistake.code,
      reason: mistake.message,
      requestId: headerValue(request, REQUEST_ID_HEADER) ?? undefined,
      peer: formatPeer(request.socket.remoteAddress, request.socket.remotePort),
    });
    void replyAfterBody(request, options.maxRequestBytes, () => sendError(response, mistake));
  };

  return (request, response) => {
    // This handler and connect-node pass the deadline to setTimeout, which fires one over 2^31-1 ms after 1 ms.
    capDeadlineHeaders(request.headers);
    const path = pathOf(request);
    if (request.method !== "POST") {
      const mistake = methodMistake(request, routes.get(path));
      if (mistake !== undefined) {
        reject(request, response, path, mistake);
      } else {
        options.fallback(request, response);
      }
      return;
    }
    const route = routes.get(path);
    const contentType = headerValue(request, "content-type");
    const type = parseContentType(contentType);
    if (route === undefined || type === undefined || type.stream) {
      const mistake = request.method === "POST" ? callMistake(path, route, contentType, type, methodsOf) : undefined;
      if (mistake !== undefined) {
        reject(request, response, path, mistake);
        return;
      }
      options.fallback(request, response);
      return;
    }

    serve(route, type.binary, request, response).catch((error: unknown) => {
      // Only compressing or writing the reply can fail here, after the
      // pipeline has logged the call, so the caller gets a reset.
      options.logger.warn({ err: error, procedure: route.procedure }, "failed to write the reply of an RPC");
      response.destroy();
    });
  };
}

/** A request that no server of the port can serve, and what the caller should change. */
interface CallMistake {
  status: number;
  code: Code.Unimplemented | Code.InvalidArgument;
  message: string;
  /** The HTTP methods that the path takes, for the `Allow` header of a 405. */
  allow?: string;
}

/**
 * Returns what is wrong with a POST that would otherwise get an empty 404 or
 * 415 from connect-node. That is a Connect call to a method the service does
 * not have, or a call to one of its methods in a content type that no
 * protocol uses, such as curl's form encoding. Returns undefined for every
 * request that connect-node serves or rejects in its own protocol.
 */
function callMistake(
  path: string,
  route: UnaryRoute | undefined,
  contentType: string | null,
  type: ReturnType<typeof parseContentType>,
  methodsOf: ReadonlyMap<string, readonly string[]>,
): CallMistake | undefined {
  if (route !== undefined) {
    if (contentType !== null && /^application\/grpc/i.test(contentType)) {
      return undefined;
    }
    return {
      status: 415,
      code: Code.InvalidArgument,
      message:
        `unsupported content type ${contentType === null ? "(none)" : JSON.stringify(contentType)}; ` +
        "send Connect calls as application/json or application/proto, or use a gRPC or gRPC-Web client",
    };
  }

  const message = type === undefined || type.stream ? undefined : unknownMethodMessage(path, methodsOf);
  return message === undefined ? undefined : { status: 404, code: Code.Unimplemented, message };
}

/**
 * Returns what is wrong with a request to one of the service's methods in
 * an HTTP method other than POST. Such requests are a GET without Connect's
 * query parameters, a GET of a method with side effects, or a PUT, PATCH or
 * DELETE, and connect-node rejects them with an empty 405 or 415. Returns
 * undefined for a Connect GET, for other paths and for other HTTP methods,
 * such as OPTIONS.
 */
function methodMistake(request: AnyRequest, route: UnaryRoute | undefined): CallMistake | undefined {
  if (route === undefined || !["GET", "PUT", "PATCH", "DELETE"].includes(request.method ?? "")) {
    return undefined;
  }
  const name = route.procedure.slice(route.procedure.lastIndexOf("/") + 1);
  const post = "POST the request with content-type application/json";
  if (request.method !== "GET" || !route.allowsGet) {
    const allow = route.allowsGet ? "POST, GET" : "POST";
    const problem = request.method === "GET" ? `${name} has side effects, so it takes POST only` : `${name} takes ${allow.replace(", ", " or ")}`;
    return { status: 405, code: Code.Unimplemented, message: `${problem}; ${post}`, allow };
  }
  if (new URLSearchParams((request.url ?? "").split("?", 2)[1] ?? "").has("encoding")) {
    return undefined;
  }
  return {
    status: 415,
    code: Code.InvalidArgument,
    message:
      `a Connect GET of ${name} needs the query parameters encoding=json and message, the request as URL-encoded JSON, ` +
      `as in ?encoding=json&message=%7B%7D; or ${post}`,
  };
}

/** Writes a Connect error body for a request that never became a call. */
function sendError(response: AnyResponse, mistake: CallMistake): void {
  const body = Buffer.from(JSON.stringify({ code: codeToString(mistake.code), message: mistake.message }));
  const headers: Record<string, string | number> = { "content-type": contentTypeUnaryJson, "content-length": body.byteLength };
  if (mistake.allow !== undefined) {
    headers.allow = mistake.allow;
  }
  response.writeHead(mistake.status, headers);
  response.end(body);
}

/**
 * Decodes a request message, or returns an {@link UndecodableRequest} when the
 * bytes are not one. Unknown JSON fields are ignored unless `jsonOptions` set
 * `ignoreUnknownFields: false`, the same default as connect-node's.
 */
function decodeMessage(schema: DescMessage, binary: boolean, bytes: Uint8Array, jsonOptions: Partial<JsonReadOptions>): unknown {
  if (binary) {
    try {
      return fromBinary(schema, bytes);
    } catch (error) {
      return new UndecodableRequest(error);
    }
  }
  const text = textDecoder.decode(bytes);
  try {
    return fromJsonString(schema, text, jsonOptions);
  } catch (error) {
    return new UndecodableRequest(error, locateJsonError(schema, text, jsonOptions));
  }
}

const textDecoder = new TextDecoder();

/**
 * Reads the whole request body, failing with RESOURCE_EXHAUSTED as soon as
 * the declared or received length passes `maxBytes`, and with the signal's
 * reason when the call ends first. A compressed body is decompressed under
 * the same limit.
 */
async function readMessageBytes(
  request: AnyRequest,
  maxBytes: number,
  signal: AbortSignal,
  compression: Compression | null,
): Promise<Uint8Array> {
  const declared = headerValue(request, "content-length");
  if (declared !== null && /^\d+$/.test(declared) && Number(declared) > maxBytes) {
    throw requestTooLarge(maxBytes, Number(declared));
  }

  const bytes = await new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let received = 0;
    const settle = () => {
      request.off("data", onData);
      request.off("end", onEnd);
      request.off("error", onError);
      signal.removeEventListener("abort", onAbort);
    };
    const onData = (chunk: Buffer) => {
      received += chunk.byteLength;
      if (received > maxBytes) {
        settle();
        request.pause();
        reject(requestTooLarge(maxBytes));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => {
      settle();
      // When the caller resets an HTTP/2 stream, Node closes the stream and
      // then ends the request as if the body were complete. The bytes so far
      // may still decode as a message that lacks its later fields.
      if ("stream" in request && request.stream.closed) {
        reject(callerCanceled());
        return;
      }
      resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, received));
    };
    const onError = (error: Error) => {
      settle();
      reject(error);
    };
    const onAbort = () => {
      settle();
      reject(signal.reason);
    };
    request.on("data", onData);
    request.once("end", onEnd);
    request.once("error", onError);
    signal.addEventListener("abort", onAbort);
  });

  if (compression === null) {
    return bytes;
  }
  try {
    return await compression.decompress(bytes, maxBytes);
  } catch (error) {
    throw ConnectError.from(error).code === Code.ResourceExhausted ? requestTooLarge(maxBytes) : error;
  }
}

/**
 * Reads the rest of a request body, then replies. A reply written before the
 * body ended would make Node reset an HTTP/2 stream, which some clients
 * report as an error. Past `maxBytes`, it replies and then resets the stream
 * so that the caller stops sending.
 */
async function replyAfterBody(request: AnyRequest, maxBytes: number, reply: () => void): Promise<void> {
  const complete = await discardBody(request, maxBytes);
  reply();
  if (!complete) {
    stopRequestAfterReply(request);
  }
}

/**
 * Reads and drops the rest of a request body. Resolves true once it ended,
 * or false as soon as it declares or sends more than `maxBytes`, or fails.
 */
function discardBody(request: AnyRequest, maxBytes: number): Promise<boolean> {
  if (request.readableEnded) {
    return Promise.resolve(true);
  }
  const declared = headerValue(request, "content-length");
  if (declared !== null && Number(declared) > maxBytes) {
    return Promise.resolve(false);
  }

  return new Promise((resolve) => {
    let received = 0;
    const settle = (complete: boolean) => {
      request.off("data", onData);
      request.off("end", onEnd);
      request.off("error", onError);
      request.off("close", onError);
      resolve(complete);
    };
    const onData = (chunk: Buffer) => {
      received += chunk.byteLength;
      if (received > maxBytes) {
        request.pause();
        settle(false);
      }
    };
    const onEnd = () => settle(true);
    const onError = () => settle(false);
    request.on("data", onData);
    request.once("end", onEnd);
    request.once("error", onError);
    request.once("close", onError);
    // A body read that stopped at the limit paused the request, and a new listener does not resume it.
    request.resume();
  });
}

/**
 * Resets an HTTP/2 stream with NO_ERROR once the reply is out, so that the
 * caller stops sending a body the service will not read (RFC 9113, section
 * 8.1). Node's HTTP/1.1 server drops the rest of such a body itself.
 */
function stopRequestAfterReply(request: AnyRequest): void {
  // With NO_ERROR on a stream whose reply has ended, Node sends the reset after the reply's last frame.
  if ("stream" in request && !request.stream.closed) {
    request.stream.close(http2.constants.NGHTTP2_NO_ERROR);
  }
}

function callerCanceled(): ConnectError {
  return new ConnectError("the caller canceled the call", Code.Canceled);
}

/**
 * A Connect unary call adapted to the pipeline. Its signal aborts when the
 * response closes before the reply (the caller reset the stream or closed the
 * connection), when the `Connect-Timeout-Ms` deadline passes, or when the
 * shutdown signal aborts.
 */
class ConnectUnaryCall implements IncomingCall, ShutdownAbortable {
  readonly server = "connect-unary";
  readonly signal: AbortSignal;
  private readonly controller = new LightAbortController();
  private readonly deadline: number | undefined;
  private readonly timer: NodeJS.Timeout | undefined;
  private readonly onClose: () => void;

  constructor(
    private readonly request: AnyRequest,
    private readonly response: AnyResponse,
    private readonly shutdown: ShutdownFanOut,
    timeoutMs: number | undefined,
  ) {
    const controller = this.controller;
    this.signal = controller.signal;
    if (timeoutMs !== undefined) {
      this.deadline = Date.now() + timeoutMs;
      this.timer = setTimeout(() => {
        controller.abort(new ConnectError("the caller's deadline passed", Code.DeadlineExceeded));
      }, timeoutMs);
    }
    this.onClose = () => controller.abort(callerCanceled());
    response.once("close", this.onClose);
    shutdown.add(this);
  }

  abortForShutdown(reason: unknown): void {
    this.controller.abort(reason);
  }

  timeoutMs(): number | undefined {
    return this.deadline === undefined ? undefined : this.deadline - Date.now();
  }

  requestHeader(name: string): string | null {
    return headerValue(this.request, name.toLowerCase());
  }

  setResponseHeader(name: string, value: string): void {
    if (!this.response.headersSent) {
      this.response.setHeader(name, value);
    }
  }

  /** Stops the deadline timer and stops listening for the caller and the shutdown. */
  finish(): void {
    clearTimeout(this.timer);
    this.response.off("close", this.onClose);
    this.shutdown.delete(this);
  }

  /** Writes the reply, unless the caller has gone. */
  respond(status: number, contentType: string, body: Uint8Array): void {
    if (this.response.destroyed || this.response.writableEnded) {
      return;
    }
    this.response.writeHead(status, { "content-type": contentType, "content-length": body.byteLength });
    this.response.end(body);
  }
}

/**
 * Returns a request header as one string, joining repeated values as
 * `Headers.get` does. Node gives header names in lower case, so `name` must be too.
 */
function headerValue(request: AnyRequest, name: string): string | null {
  const value = request.headers[name];
  if (value === undefined) {
    return null;
  }
  return typeof value === "string" ? value : value.join(", ");
}
