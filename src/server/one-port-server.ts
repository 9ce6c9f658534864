import { readFileSync } from "node:fs";
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import type { AddressInfo } from "node:net";
import { ConnectionTracker } from "./connection-tracker.js";

/** A request handler that works for both HTTP/1.1 and HTTP/2 requests. */
export type RequestHandler = (
  request: http.IncomingMessage | http2.Http2ServerRequest,
  response: http.ServerResponse | http2.Http2ServerResponse,
) => void;

export interface ListenOptions {
  host: string;
  port: number;
  /** PEM files; when set, the port serves TLS with ALPN for h2 and http/1.1. */
  tls?: { certFile: string; keyFile: string };
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

/** The client preface that starts every cleartext HTTP/2 connection (RFC 9113). */
const HTTP2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");

/**
 * Listens on one port for HTTP/1.1 and HTTP/2. In cleartext, the first bytes
 * of each connection decide: the HTTP/2 preface goes to the HTTP/2 server,
 * anything else to the HTTP/1.1 server. With TLS, ALPN decides.
 */
export async function startServer(handler: RequestHandler, options: ListenOptions): Promise<RunningServer> {
  const tracker = new ConnectionTracker();
  const tracked = tracker.wrap(handler);
  let listener: net.Server;

  if (options.tls !== undefined) {
    const secure = http2.createSecureServer(
      {
        cert: readFileSync(options.tls.certFile),
        key: readFileSync(options.tls.keyFile),
        allowHTTP1: true,
        ALPNProtocols: ["h2", "http/1.1"],
      },
      tracked,
    );
    secure.on("session", (session) => tracker.addSession(session));
    listener = secure;
  } else {
    const h2 = http2.createServer({}, tracked);
    h2.on("session", (session) => tracker.addSession(session));
    const h1 = http.createServer(tracked);
    listener = net.createServer((socket) => routeByPreface(socket, h1, h2, tracker));
  }
  listener.on("connection", (socket: net.Socket) => tracker.addSocket(socket));

  await new Promise<void>((resolve, reject) => {
    listener.once("error", reject);
    listener.listen(options.port, options.host, () => {
      listener.off("error", reject);
      resolve();
    });
  });
  const address = listener.address() as AddressInfo;

  return {
    host: address.address,
    port: address.port,
    tls: options.tls !== undefined,
    close: (graceMs) => tracker.drain(new Promise<void>((resolve) => listener.close(() => resolve())), graceMs),
  };
}

/**
 * Reads bytes until they either match the HTTP/2 preface or cannot, then
 * hands the socket, with those bytes put back, to the matching server.
 */
function routeByPreface(socket: net.Socket, h1: http.Server, h2: http2.Http2Server, tracker: ConnectionTracker): void {
  let received = Buffer.alloc(0);
  const onData = (chunk: Buffer) => {
    received = Buffer.concat([received, chunk]);
    const compared = Math.min(received.length, HTTP2_PREFACE.length);
    const isHttp2 = received.subarray(0, compared).equals(HTTP2_PREFACE.subarray(0, compared));
    if (isHttp2 && compared < HTTP2_PREFACE.length) {
      return;
    }

    socket.off("data", onData);
    socket.pause();
    socket.unshift(received);
    if (isHttp2) {
      // The HTTP/2 session drains the bytes buffered on the socket when it
      // starts, and then reads the handle itself. Resuming the socket here
      // would steal its input.
      tracker.markHttp2(socket);
      h2.emit("connection", socket);
    } else {
      h1.emit("connection", socket);
      socket.resume();
    }
  };
  socket.on("data", onData);
  socket.on("error", () => socket.destroy());
}
