import type http from "node:http";
import http2 from "node:http2";
import type net from "node:net";

type AnyRequest = http.IncomingMessage | http2.Http2ServerRequest;
type AnyResponse = http.ServerResponse | http2.Http2ServerResponse;

/**
 * Follows every connection of a server so that it can close gracefully:
 * HTTP/2 sessions get GOAWAY, idle HTTP/1.1 connections close at once, busy
 * ones close after their response, and whatever remains when the grace
 * period ends is destroyed.
 */
export class ConnectionTracker {
  private readonly sockets = new Set<net.Socket>();
  private readonly sessions = new Set<http2.Http2Session>();
  /** HTTP/1.1 requests in progress per connection; a connection with 0 is idle. */
  private readonly http1Requests = new Map<net.Socket, number>();
  /** Accepted sockets handed to the HTTP/2 server. */
  private readonly http2Sockets = new WeakSet<net.Socket>();
  /** HTTP/2 streams whose response is complete while the client has not ended its request. */
  private readonly halfOpenStreams = new Set<http2.ServerHttp2Stream>();
  private closing = false;

  addSocket(socket: net.Socket): void {
    this.sockets.add(socket);
    socket.once("close", () => {
      this.sockets.delete(socket);
      this.http1Requests.delete(socket);
    });
  }

  /** Stops tracking a socket whose connection another socket now carries, such as its TLS socket. */
  removeSocket(socket: net.Socket): void {
    this.sockets.delete(socket);
    this.http1Requests.delete(socket);
  }

  addSession(session: http2.Http2Session): void {
    this.sessions.add(session);
    session.once("close", () => this.sessions.delete(session));
  }

  markHttp2(socket: net.Socket): void {
    this.http2Sockets.add(socket);
  }

  /** Wraps a request handler to count HTTP/1.1 requests per connection. */
  wrap<Request extends AnyRequest, Response extends AnyResponse>(
    handler: (request: Request, response: Response) => void,
  ): (request: Request, response: Response) => void {
    return (request, response) => {
      if (request.httpVersionMajor === 1) {
        const socket = request.socket;
        this.http1Requests.set(socket, (this.http1Requests.get(socket) ?? 0) + 1);
        if (this.closing) {
          (response as http.ServerResponse).shouldKeepAlive = false;
        }
        response.once("close", () => {
          // When the client closes the connection mid-request, the socket's "close" listener runs
          // first and removes the socket. Counting it again here would keep the closed socket for good.
          if (!this.sockets.has(socket)) {
            return;
          }
          const left = (this.http1Requests.get(socket) ?? 1) - 1;
          this.http1Requests.set(socket, left);
          if (this.closing && left === 0) {
            socket.destroySoon();
          }
        });
      }
      if (request.httpVersionMajor === 2) {
        this.watchHalfOpen(request as http2.Http2ServerRequest);
      }
      handler(request, response);
    };
  }

  /**
   * Follows an HTTP/2 stream that may stay half-open: a streaming RPC that
   * the server ended while the client keeps its request side open. Such a
   * stream keeps its session, and so a graceful shutdown, open until the
   * client ends it. While closing, it gets RST_STREAM with NO_ERROR, which
   * RFC 9113 (section 8.1) provides for a complete response; Node sends it
   * after the response's last frame. Until then the client may still end it.
   */
  private watchHalfOpen(request: http2.Http2ServerRequest): void {
    // The stream's own "finish" fires when its writable side is done. The
    // compatibility response emits "finish" only once the whole stream closes.
    const { stream } = request;
    stream.once("finish", () => {
      if (request.complete || stream.destroyed) {
        return;
      }
      if (this.closing) {
        stream.close(http2.constants.NGHTTP2_NO_ERROR);
        return;
      }
      this.halfOpenStreams.add(stream);
      stream.once("close", () => this.halfOpenStreams.delete(stream));
    });
  }

  /**
   * Closes idle connections now and the rest as they finish; destroys what
   * is left after `graceMs`. Resolves when `listenerClosed` does.
   */
  async drain(listenerClosed: Promise<void>, graceMs: number): Promise<void> {
    this.closing = true;
    for (const stream of this.halfOpenStreams) {
      stream.close(http2.constants.NGHTTP2_NO_ERROR);
    }
    for (const session of this.sessions) {
      session.close();
    }
    for (const [socket, active] of this.http1Requests) {
      if (active === 0) {
        socket.destroy();
      }
    }
    for (const socket of this.sockets) {
      if (!this.http1Requests.has(socket) && !this.http2Sockets.has(socket)) {
        socket.destroy();
      }
    }

    const timer = setTimeout(() => {
      for (const socket of this.sockets) {
        socket.destroy();
      }
    }, graceMs);
    timer.unref();
    await listenerClosed;
    clearTimeout(timer);
  }
}
