import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import { performance } from "node:perf_hooks";
import type { AddressInfo } from "node:net";
import tls from "node:tls";
import { ServerCredentials, type Server as GrpcJsServer } from "@grpc/grpc-js";
import type { Logger } from "pino";
import { CleartextConnectionLog, CleartextRejection, routeTlsPortConnection } from "./cleartext-on-tls-port.js";
import { ConnectionTracker } from "./connection-tracker.js";
import { awaitFirstRequest, FIRST_REQUEST_TIMEOUT_MS, SETTINGS_ACK_TIMEOUT_MS } from "./first-request-router.js";
import { matchHttp2Preface, type FirstRequest } from "./http2-first-request.js";
import { ThrottledWarning } from "./throttled-warning.js";
import type { TlsCredentials } from "./tls-files.js";

/** A request handler that works for both HTTP/1.1 and HTTP/2 requests. */
export type RequestHandler = (
  request: http.IncomingMessage | http2.Http2ServerRequest,
  response: http.ServerResponse | http2.Http2ServerResponse,
) => void;

export interface ListenOptions {
  host: string;
  port: number;
  /**
   * PEM certificate chain and key; when set, the port serves TLS with ALPN
   * for h2 and http/1.1. A cleartext HTTP/1.x or HTTP/2 request on it gets
   * an error that states that the port expects TLS, and its connection closes.
   */
  tls?: TlsCredentials;
  /** Logger of the cleartext connections to the TLS port, at warn level; they are not logged when unset. */
  logger?: Logger;
  /**
   * A grpc-js server that takes the HTTP/2 connections whose first request
   * is gRPC with protobuf to one of `paths`; every other connection goes to
   * `handler`.
   */
  grpcJs?: GrpcJsRoute;
  /**
   * Time in milliseconds that a connection has for its first request's
   * headers before it is closed (FIRST_REQUEST_TIMEOUT_MS), counted from the
   * connection, or for TLS from the end of the handshake. A connection must
   * send the bytes that choose HTTP/1.1 or HTTP/2, or with TLS the first
   * bytes of its handshake, within it, and with TLS finish the handshake
   * within it too. With `grpcJs`, an HTTP/2
   * connection's first request must arrive within the same time. Unless `http1Timeouts` is set, it is also Node's
   * `headersTimeout`, which gives each HTTP/1.1 request this time again for
   * its headers. It must not exceed Node's `requestTimeout` of 300 s.
   * {@link FIRST_REQUEST_TIMEOUT_MS} when unset.
   */
  firstRequestTimeoutMs?: number;
  /**
   * Limits of Node's HTTP/1.1 server on a request's headers and on the
   * whole request. When unset, `headersTimeout` is `firstRequestTimeoutMs`,
   * checked every 30 s or every `firstRequestTimeoutMs` when that is
   * shorter, and `requestTimeout` is Node 20's default of 300 s.
   */
  http1Timeouts?: Pick<http.ServerOptions, "headersTimeout" | "requestTimeout" | "connectionsCheckingInterval">;
}

/** Node 20's default time between its checks of the HTTP/1.1 header and request timeouts. */
const NODE_CONNECTIONS_CHECKING_INTERVAL_MS = 30_000;

/** The grpc-js server of {@link ListenOptions.grpcJs} and the paths it implements. */
export interface GrpcJsRoute {
  server: GrpcJsServer;
  /** Request paths, such as `/smsgateway.v1.SmsService/SendSms`. */
  paths: ReadonlySet<string>;
}

export interface RunningServer {
  /** The address actually bound, with the port picked when 0 was asked for. */
  readonly host: string;
  readonly port: number;
  readonly tls: boolean;
  /**
   * Stops accepting connections, lets requests in progress finish for up to
   * `graceMs`, then closes every remaining connection.
   */
  close(graceMs: number): Promise<void>;
}

/**
 * Listens on one port for HTTP/1.1 and HTTP/2. In cleartext, the first bytes
 * of each connection decide: the HTTP/2 preface goes to HTTP/2, anything
 * else to HTTP/1.1. With TLS, ALPN decides, and cleartext HTTP gets a reply
 * that the port expects TLS. With `grpcJs`, an HTTP/2 connection then goes
 * to grpc-js when its first request is gRPC to one of the grpc-js paths,
 * and to `handler` otherwise.
 */
export async function startServer(handler: RequestHandler, options: ListenOptions): Promise<RunningServer> {
  const tracker = new ConnectionTracker();
  const tracked = tracker.wrap(handler);
  const firstRequestTimeoutMs = options.firstRequestTimeoutMs ?? FIRST_REQUEST_TIMEOUT_MS;
  const h1 = http.createServer(options.http1Timeouts ?? http1TimeoutsFor(firstRequestTimeoutMs), tracked);
  const h2 = http2.createServer({}, tracked);
  h2.on("session", (session) => tracker.addSession(session));

  const route = options.grpcJs;
  const injector = route?.server.createConnectionInjector(ServerCredentials.createInsecure());
  // `connectedAt` starts the connection's one limit for its first request, preface included.
  const toHttp2 = (socket: net.Socket, received: Buffer, connectedAt = performance.now()) => {
    if (injector === undefined || route === undefined) {
      // The HTTP/2 session drains the bytes buffered on the socket when it
      // starts, and then reads the handle itself. Resuming the socket here
      // would steal its input.
      socket.pause();
      if (received.length > 0) {
        socket.unshift(received);
      }
      tracker.markHttp2(socket);
      h2.emit("connection", socket);
      return;
    }
    const handover = (request: FirstRequest | undefined) => {
      tracker.markHttp2(socket);
      if (request !== undefined && isGrpcJsRequest(request, route.paths)) {
        injector.injectConnection(socket);
      } else {
        h2.emit("connection", socket);
      }
    };
    const leftMs = Math.max(0, firstRequestTimeoutMs - (performance.now() - connectedAt));
    awaitFirstRequest(socket, received, handover, SETTINGS_ACK_TIMEOUT_MS, leftMs);
  };

  let listener: net.Server;
  if (options.tls !== undefined) {
    const tlsServer = tls.createServer({
      cert: options.tls.cert,
      key: options.tls.key,
      ALPNProtocols: ["h2", "http/1.1"],
    });
    // The listener reads the first bytes itself, so that a cleartext client gets a reply
    // it can read, and hands TLS connections to tlsServer, which does not listen.
    const cleartextLog = options.logger === undefined ? undefined : new CleartextConnectionLog(options.logger);
    const cleartext = new CleartextRejection(firstRequestTimeoutMs, cleartextLog);
    if (options.logger !== undefined) {
      logFailedHandshakes(tlsServer, options.logger);
    }
    // Until its handshake ends, a connection is tracked as the accepted socket, which closing
    // destroys at once, because it has no request yet or only a cleartext one that gets no reply.
    // The TLS socket then takes its place, keyed by the same TCP addresses and ports.
    // Each entry also has the function that stops the connection's time limit for its handshake.
    const handshaking = new Map<string, { accepted: net.Socket; endHandshake: () => void }>();
    listener = net.createServer((socket) => {
      const key = connectionKey(socket);
      socket.once("close", () => {
        if (handshaking.get(key)?.accepted === socket) {
          handshaking.delete(key);
        }
      });
      tracker.addSocket(socket);
      const endHandshake = routeTlsPortConnection(socket, tlsServer, cleartext, firstRequestTimeoutMs);
      handshaking.set(key, { accepted: socket, endHandshake });
    });
    tlsServer.on("secureConnection", (socket: tls.TLSSocket) => {
      const key = connectionKey(socket);
      const entry = handshaking.get(key);
      if (entry !== undefined) {
        handshaking.delete(key);
        entry.endHandshake();
        tracker.removeSocket(entry.accepted);
      }
      tracker.addSocket(socket);
      socket.on("error", () => socket.destroy());
      if (socket.alpnProtocol === "h2") {
        toHttp2(socket, Buffer.alloc(0));
      } else {
        h1.emit("connection", socket);
      }
    });
  } else {
    listener = net.createServer((socket) => routeByPreface(socket, h1, toHttp2, firstRequestTimeoutMs));
    listener.on("connection", (socket: net.Socket) => tracker.addSocket(socket));
  }

  try {
    await new Promise<void>((resolve, reject) => {
      listener.once("error", reject);
      listener.listen(options.port, options.host, () => {
        listener.off("error", reject);
        resolve();
      });
    });
  } catch (error) {
    injector?.destroy();
    throw error;
  }
  // Node's HTTP/1.1 server starts enforcing headersTimeout and requestTimeout on its own
  // "listening" event. h1 never listens, because the listener above owns the port, so it
  // gets the event here. Without it a client could hold a connection open for good by
  // sending a request's headers slowly or never finishing them.
  h1.emit("listening");
  const address = listener.address() as AddressInfo;

  return {
    host: address.address,
    port: address.port,
    tls: options.tls !== undefined,
    async close(graceMs) {
      injector?.drain(graceMs);
      await tracker.drain(new Promise<void>((resolve) => listener.close(() => resolve())), graceMs);
      // Stops the timer that checks HTTP/1.1 requests for their timeouts.
      h1.close();
      injector?.destroy();
    },
  };
}

/**
 * Returns the HTTP/1.1 limits for a first-request time of
 * `firstRequestTimeoutMs`: that time for each request's headers, checked at
 * least that often, so that a short limit is not enforced up to 30 s late.
 */
function http1TimeoutsFor(firstRequestTimeoutMs: number): Pick<http.ServerOptions, "headersTimeout" | "connectionsCheckingInterval"> {
  return {
    headersTimeout: firstRequestTimeoutMs,
    connectionsCheckingInterval: Math.min(NODE_CONNECTIONS_CHECKING_INTERVAL_MS, firstRequestTimeoutMs),
  };
}

/**
 * Logs TLS handshakes that fail, such as a client that offers no protocol
 * version or cipher the server takes or rejects the certificate, as a
 * throttled warning with the client's address and OpenSSL's reason. Node
 * destroys the connection either way.
 */
function logFailedHandshakes(tlsServer: tls.Server, logger: Logger): void {
  const warning = new ThrottledWarning(logger, "TLS handshake failed; the client's TLS settings or its trust in the certificate may be wrong");
  tlsServer.on("tlsClientError", (error: Error & { code?: string }, socket: tls.TLSSocket) => {
    warning.record({ remoteAddress: remoteAddressOf(socket), code: error.code, error: error.message });
  });
}

/**
 * Returns the client address of a TLS socket that may be destroyed already.
 * Node 20 destroys it before it emits `tlsClientError`, and then only the TCP
 * socket it wraps still has the address, in `_parent`, a field internal to
 * Node. Without that field the address is left out of the line.
 */
function remoteAddressOf(socket: tls.TLSSocket): string | undefined {
  return socket.remoteAddress ?? (socket as tls.TLSSocket & { _parent?: net.Socket })._parent?.remoteAddress;
}

/** Names a connection by its TCP addresses and ports, which the accepted socket and its TLS socket share. */
function connectionKey(socket: net.Socket): string {
  return `${socket.localAddress} ${socket.localPort} ${socket.remoteAddress} ${socket.remotePort}`;
}

/** Content types of gRPC with protobuf messages, the only encoding the grpc-js services decode. */
const GRPC_PROTO_CONTENT_TYPES = new Set(["application/grpc", "application/grpc+proto"]);

/** Tests whether a first request is gRPC with protobuf to a path that grpc-js implements. */
export function isGrpcJsRequest(request: FirstRequest, paths: ReadonlySet<string>): boolean {
  return isGrpcProtoContentType(request.contentType) && paths.has(request.path);
}

/**
 * Tests whether a content type is gRPC with protobuf messages, parameters
 * aside. Letter case counts, as in grpc-js's own check, so that the
 * connections routed to grpc-js and the requests it serves on them agree.
 */
export function isGrpcProtoContentType(contentType: string): boolean {
  if (GRPC_PROTO_CONTENT_TYPES.has(contentType)) {
    return true;
  }
  const mediaType = contentType.split(";", 1)[0]!.trim();
  return GRPC_PROTO_CONTENT_TYPES.has(mediaType);
}

/**
 * Reads bytes until they either match the HTTP/2 preface or cannot, then
 * hands the socket to the matching server: to HTTP/1.1 with those bytes put
 * back, to `toHttp2` with the bytes read so far. A connection that has not
 * decided within `timeoutMs` is destroyed.
 */
function routeByPreface(
  socket: net.Socket,
  h1: http.Server,
  toHttp2: (socket: net.Socket, received: Buffer, connectedAt: number) => void,
  timeoutMs: number,
): void {
  const connectedAt = performance.now();
  const timer = setTimeout(() => socket.destroy(), timeoutMs);
  timer.unref();
  socket.once("close", () => clearTimeout(timer));

  let received = Buffer.alloc(0);
  const onData = (chunk: Buffer) => {
    received = Buffer.concat([received, chunk]);
    const preface = matchHttp2Preface(received);
    if (preface === "partial") {
      return;
    }

    socket.off("data", onData);
    clearTimeout(timer);
    if (preface === "http2") {
      toHttp2(socket, received, connectedAt);
    } else {
      socket.pause();
      socket.unshift(received);
      h1.emit("connection", socket);
      socket.resume();
    }
  };
  socket.on("data", onData);
  socket.on("error", () => socket.destroy());
}
