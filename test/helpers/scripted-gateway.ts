import { once } from "node:events";
import {
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from "node:http";
import type { AddressInfo, Socket } from "node:net";

/** One request that the gateway received. */
export interface RecordedRequest {
  method: string;
  /** Path and query, as sent on the request line. */
  url: string;
  /** Header names in lower case. */
  headers: IncomingHttpHeaders;
  /** Header names and values as sent, alternating. */
  rawHeaders: string[];
  body: string;
  /** Client port of the connection, to check whether connections were reused. */
  remotePort: number;
}

/** How the gateway replies to one request. */
export interface ScriptedReply {
  /** HTTP status, 200 unless set. */
  status?: number;
  headers?: Record<string, string | string[]>;
  /** Sent through `JSON.stringify` with `content-type: application/json`. */
  json?: unknown;
  /** Sent as is, in place of `json`. */
  body?: string | Buffer;
  /** Never reply, keeping the connection open. */
  hang?: boolean;
  /** Send the status, the headers and part of the body, then nothing more. */
  hangBody?: boolean;
  /** Send the status, the headers and part of the body, then destroy the connection. */
  resetBody?: boolean;
  /** Destroy the connection without a reply. */
  reset?: boolean;
  /**
   * Write the reply by hand, for replies that the fields above cannot
   * describe, such as a body trickled byte by byte. Replaces every other field.
   */
  respond?: (response: ServerResponse, request: IncomingMessage) => void;
}

/** Options of {@link ScriptedGateway.start}. */
export interface ScriptedGatewayOptions {
  /** Time the server keeps an idle kept-alive connection open (`server.keepAliveTimeout`); Node's default unless set. */
  keepAliveTimeoutMs?: number;
  /**
   * Destroy a connection once it has been idle this long after a reply,
   * although its `Keep-Alive: timeout=5` header (Node's default) promises 5 seconds.
   */
  dropIdleAfterMs?: number;
  /**
   * Destroy a kept-alive connection when a next request arrives on it,
   * before that request is read or recorded. It is the race of a gateway
   * that closes an idle connection just as the client writes a request to
   * it, made deterministic.
   */
  dropReusedConnections?: boolean;
}

/** A fixed reply, or a function that builds the reply from the request. */
export type ReplyScript = ScriptedReply | ((request: RecordedRequest) => ScriptedReply | Promise<ScriptedReply>);

/**
 * An HTTP server on 127.0.0.1 that replaces an SMS gateway in tests.
 *
 * It records every request and replies as each test scripts it, per path.
 * Paths without a script get the default reply, which is 404 unless set.
 */
export class ScriptedGateway {
  /** Every request received, in order of arrival. */
  readonly requests: RecordedRequest[] = [];
  /** Connections accepted since the start. */
  connectionsAccepted = 0;

  private readonly sockets = new Set<Socket>();
  private readonly routes = new Map<string, ReplyScript>();
  private defaultReply: ReplyScript = { status: 404, json: { error: "no script for this path" } };

  private constructor(private readonly server: Server) {}

  /** Starts a gateway on a free loopback port. */
  static async start(options: ScriptedGatewayOptions = {}): Promise<ScriptedGateway> {
    const server = createServer();
    if (options.keepAliveTimeoutMs !== undefined) {
      server.keepAliveTimeout = options.keepAliveTimeoutMs;
    }
    const gateway = new ScriptedGateway(server);
    server.on("connection", (socket: Socket) => {
      gateway.connectionsAccepted += 1;
      gateway.sockets.add(socket);
      socket.once("close", () => gateway.sockets.delete(socket));
    });
    const dropped = connectionDropper(options);
    server.on("request", (request, response) => {
      if (!dropped(request, response)) {
        void gateway.handle(request, response);
      }
    });
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    return gateway;
  }

  /** Returns the URL of a path on this gateway, such as `http://127.0.0.1:41234/sms`. */
  url(path = "/sms"): string {
    const { port } = this.server.address() as AddressInfo;
    return `http://127.0.0.1:${port}${path}`;
  }

  /** Sets the reply for requests to a path, compared without the query. */
  on(path: string, reply: ReplyScript): this {
    this.routes.set(path, reply);
    return this;
  }

  /** Sets the reply for paths without their own script. */
  otherwise(reply: ReplyScript): this {
    this.defaultReply = reply;
    return this;
  }

  /** Connections open now, idle kept-alive ones included. */
  get openConnections(): number {
    return this.sockets.size;
  }

  /** Returns the recorded requests to a path, compared without the query. */
  requestsTo(path: string): RecordedRequest[] {
    return this.requests.filter((request) => pathOf(request.url) === path);
  }

  /** Closes the server and every open connection, including hanging ones. */
  async close(): Promise<void> {
    const closed = once(this.server, "close");
    this.server.close();
    this.server.closeAllConnections();
    await closed;
  }

  private async handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of request) {
      chunks.push(chunk as Buffer);
    }
    const recorded: RecordedRequest = {
      method: request.method ?? "",
      url: request.url ?? "",
      headers: request.headers,
      rawHeaders: request.rawHeaders,
      body: Buffer.concat(chunks).toString("utf8"),
      remotePort: request.socket.remotePort ?? 0,
    };
    this.requests.push(recorded);

    const script = this.routes.get(pathOf(recorded.url)) ?? this.defaultReply;
    const reply = typeof script === "function" ? await script(recorded) : script;
    if (reply.respond !== undefined) {
      reply.respond(response, request);
      return;
    }
    if (reply.reset) {
      request.socket.destroy();
      return;
    }
    if (reply.hang) {
      return;
    }

    const headers: Record<string, string | string[]> = { ...reply.headers };
    let body: string | Buffer = "";
    if (reply.body !== undefined) {
      body = reply.body;
    } else if (reply.json !== undefined) {
      body = JSON.stringify(reply.json);
      headers["content-type"] ??= "application/json";
    }
    if (reply.hangBody || reply.resetBody) {
      // Announce more bytes than are sent, so the client waits for the rest.
      response.writeHead(reply.status ?? 200, { ...headers, "content-length": String(body.length + 100) });
      response.write(body);
      if (reply.resetBody) {
        setTimeout(() => request.socket.destroy(), 20);
      }
      return;
    }
    response.writeHead(reply.status ?? 200, headers);
    response.end(body);
  }
}

/**
 * Returns a check, run on each request, that drops connections as the
 * options ask: it destroys the connection and returns true when the
 * request must not be handled.
 */
function connectionDropper(options: ScriptedGatewayOptions): (request: IncomingMessage, response: ServerResponse) => boolean {
  const served = new WeakSet<Socket>();
  const idleTimers = new WeakMap<Socket, NodeJS.Timeout>();
  return (request, response) => {
    const socket = request.socket;
    clearTimeout(idleTimers.get(socket));
    if (options.dropReusedConnections === true && served.has(socket)) {
      socket.destroy();
      return true;
    }
    served.add(socket);

    const idleMs = options.dropIdleAfterMs;
    if (idleMs !== undefined) {
      response.once("finish", () => {
        const timer = setTimeout(() => socket.destroy(), idleMs);
        idleTimers.set(socket, timer);
        socket.once("close", () => clearTimeout(timer));
      });
    }
    return false;
  };
}

/** Returns a loopback URL on which nothing listens, for connection-refused tests. */
export async function closedLoopbackUrl(path = "/sms"): Promise<string> {
  const server = createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address() as AddressInfo;
  server.close();
  await once(server, "close");
  return `http://127.0.0.1:${port}${path}`;
}

function pathOf(url: string): string {
  const query = url.indexOf("?");
  return query === -1 ? url : url.slice(0, query);
}
