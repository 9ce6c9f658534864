import http from "node:http";
import http2 from "node:http2";
import type net from "node:net";
import type tls from "node:tls";
import type { Logger } from "pino";
import { matchHttp2Preface } from "./http2-first-request.js";
import { ThrottledWarning } from "./throttled-warning.js";


/** Error message for a cleartext request to the TLS port, sent as the body, the Connect error message or the gRPC status message. */
export const EXPECTS_TLS_MESSAGE =
  "This port expects TLS: use https:// instead of http://. " +
  "With buf curl, use an https:// URL and leave out --http2-prior-knowledge. " +
  "With a gRPC client, use TLS credentials instead of insecure or plaintext ones.";

/** gRPC status FAILED_PRECONDITION: the call fails again until the client changes its settings. */
const GRPC_FAILED_PRECONDITION = "9";

/** Protocol of a cleartext connection to the TLS port, as the log line names it. */
type CleartextProtocol = "http/1.x" | "h2c";

/**
 * Logs cleartext connections to the TLS port at warn level, as a
 * {@link ThrottledWarning}: at most one line per interval, with the count of
 * the connections that were not logged.
 */
export class CleartextConnectionLog {
  private readonly warning: ThrottledWarning;

  constructor(logger: Logger, intervalMs?: number) {
    this.warning = new ThrottledWarning(logger, "rejected a cleartext HTTP connection on the TLS port", intervalMs);
  }

  record(remoteAddress: string | undefined, protocol: CleartextProtocol): void {
    this.warning.record({ remoteAddress, protocol });
  }
}

/**
 * Rejects cleartext HTTP requests on the TLS port. Each gets an error that
 * states that the port expects TLS, in the form its client reads, and the
 * connection then closes.
 */
export class CleartextRejection {
  private readonly http1 = http.createServer((request, response) => {
    response.shouldKeepAlive = false;
    respondExpectsTls(request, response);
  });
  private readonly http2 = http2.createServer({}, (request, response) => {
    respondExpectsTls(request, response);
    // Streams already open finish; the session then ends with GOAWAY NO_ERROR.
    request.stream.session?.close();
  });

  /**
   * @param timeoutMs Time from the connection after which a cleartext
   *   connection is destroyed, whether or not it got a reply.
   * @param log Where the connections are logged; they are not logged when undefined.
   */
  constructor(
    private readonly timeoutMs: number,
    private readonly log: CleartextConnectionLog | undefined,
  ) {}

  /** Takes a connection whose first bytes, `received`, are cleartext: the HTTP/2 preface or an HTTP/1.x request. */
  take(socket: net.Socket, received: Buffer, connectedAt: number): void {
    const isHttp2 = matchHttp2Preface(received) === "http2";
    this.log?.record(socket.remoteAddress, isHttp2 ? "h2c" : "http/1.x");

    const leftMs = Math.max(0, this.timeoutMs - (performance.now() - connectedAt));
    const timer = setTimeout(() => socket.destroy(), leftMs);
    timer.unref();
    socket.once("close", () => clearTimeout(timer));

    socket.pause();
    socket.unshift(received);
    if (isHttp2) {
      // The HTTP/2 session reads the bytes put back when it starts.
      this.http2.emit("connection", socket);
    } else {
      this.http1.emit("connection", socket);
      socket.resume();
    }
  }
}

/**
 * Reads the first bytes of a connection to the TLS port and routes it.
 * Bytes that start with a letter are cleartext HTTP: the start of an
 * HTTP/1.x method or of the HTTP/2 preface, where a TLS record starts with
 * its content type, 20 to 24. They go to `cleartext` once they decide
 * between HTTP/1.x and HTTP/2. Everything else goes to `tlsServer` with
 * the bytes put back. A connection that has not sent the bytes that decide
 * within `timeoutMs`, or that goes to `tlsServer` and has not finished its
 * handshake within `timeoutMs` of connecting, is destroyed.
 *
 * Returns the function to call when the connection's TLS handshake ends,
 * which stops that time limit.
 */
export function routeTlsPortConnection(
  socket: net.Socket,
  tlsServer: tls.Server,
  cleartext: CleartextRejection,
  timeoutMs: number,
): () => void {
  const connectedAt = performance.now();
  const timer = setTimeout(() => socket.destroy(), timeoutMs);
  timer.unref();
  const onError = () => socket.destroy();
  socket.on("error", onError);
  socket.once("close", () => clearTimeout(timer));

  let received = Buffer.alloc(0);
  const onData = (chunk: Buffer) => {
    received = Buffer.concat([received, chunk]);
    const isCleartext = isAsciiLetter(received[0]!);
    if (isCleartext && matchHttp2Preface(received) === "partial") {
      return;
    }

    socket.off("data", onData);
    if (isCleartext) {
      clearTimeout(timer);
      cleartext.take(socket, received, connectedAt);
      return;
    }
    // The timer runs on until the handshake ends. Node's own handshakeTimeout (120 s) is an idle
    // timeout (TLSSocket's setTimeout, Node 20), which a client that sends a byte now and then never reaches.
    // The TLS socket listens for errors on the connection itself.
    socket.off("error", onError);
    socket.pause();
    socket.unshift(received);
    // Node's TLS socket takes the bytes buffered on the socket before it reads
    // the connection itself (initRead in lib/_tls_wrap.js, Node 20), so the handshake starts complete.
    tlsServer.emit("connection", socket);
  };
  socket.on("data", onData);
  return () => clearTimeout(timer);
}

function isAsciiLetter(byte: number): boolean {
  return (byte >= 0x41 && byte <= 0x5a) || (byte >= 0x61 && byte <= 0x7a);
}

/**
 * Responds with {@link EXPECTS_TLS_MESSAGE} in the form the request's
 * protocol reads: a trailers-only gRPC response with FAILED_PRECONDITION
 * for gRPC and gRPC-Web, a Connect error with HTTP 400 for Connect, and
 * plain text with HTTP 400 for anything else.
 */
function respondExpectsTls(
  request: http.IncomingMessage | http2.Http2ServerRequest,
  response: http.ServerResponse | http2.Http2ServerResponse,
): void {
  const contentType = String(request.headers["content-type"] ?? "");
  if (/^application\/grpc/i.test(contentType)) {
    // The message is printable ASCII without "%", which a grpc-message header carries without percent-encoding.
    const headers = { "content-type": contentType, "grpc-status": GRPC_FAILED_PRECONDITION, "grpc-message": EXPECTS_TLS_MESSAGE };
    if (request instanceof http2.Http2ServerRequest) {
      // One HEADERS frame that ends the stream, which gRPC clients read as a trailers-only response.
      request.stream.respond({ ":status": 200, ...headers }, { endStream: true });
    } else {
      response.writeHead(200, headers).end();
    }
    return;
  }

  // A Connect GET request, which clients use for methods without side effects, carries only "connect=v1" in its query.
  const isConnectGet = /[?&]connect=v1(&|$)/.test(request.url ?? "");
  const isConnect =
    isConnectGet || request.headers["connect-protocol-version"] !== undefined || /^application\/(json|proto|connect\+)/i.test(contentType);
  const [type, body] = isConnect
    ? ["application/json", JSON.stringify({ code: "failed_precondition", message: EXPECTS_TLS_MESSAGE })]
    : ["text/plain; charset=utf-8", `${EXPECTS_TLS_MESSAGE}\n`];
  response.writeHead(400, { "content-type": type, "content-length": Buffer.byteLength(body) }).end(body);
}
