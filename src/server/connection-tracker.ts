import type http from "node:http";
import type http2 from "node:http2";
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
  private closing = false;

  addSocket(socket: net.Socket): void {
    this.sockets.add(socket);
    socket.once("close", () => {
      this.sockets.delete(socket);
      this.http1Requests.delete(socket);
    });
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
          const left = (this.http1Requests.get(socket) ?? 1) - 1;
          this.http1Requests.set(socket, left);
          if (this.closing && left === 0) {
            socket.destroySoon();
          }
        });
      }
      handler(request, response);
    };
  }

  /**
   * Closes idle connections now and the rest as they finish; destroys what
   * is left after `graceMs`. Resolves when `listenerClosed` does.
   */
  async drain(listenerClosed: Promise<void>, graceMs: number): Promise<void> {
    this.closing = true;
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
