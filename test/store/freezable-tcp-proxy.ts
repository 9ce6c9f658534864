import { once } from "node:events";
import net from "node:net";

/**
 * A TCP proxy on 127.0.0.1 in front of another loopback server, which a
 * test can freeze: frozen, it keeps every connection open but passes no
 * more bytes, and holds new connections without connecting them, as a
 * network that silently drops packets would. Or it can hold only the
 * replies, so that statements reach the server and commit but their results
 * never come back. Or it can cut them: reset every connection and each new
 * one, as a network that drops the connections would. Released, it passes
 * bytes on all of them again.
 */
export class FreezableTcpProxy {
  #frozen = false;
  #holdingReplies = false;
  #cut = false;
  readonly #pairs = new Set<ProxiedPair>();
  #accepted = 0;

  private constructor(
    private readonly server: net.Server,
    private readonly target: { host: string; port: number },
  ) {}

  /** Starts a proxy to `host:port` on a free loopback port. */
  static async start(target: { host: string; port: number }): Promise<FreezableTcpProxy> {
    const server = net.createServer();
    const proxy = new FreezableTcpProxy(server, target);
    server.on("connection", (client) => proxy.#accept(client));
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    return proxy;
  }

  get port(): number {
    return (this.server.address() as net.AddressInfo).port;
  }

  /** Connections accepted since the proxy started, closed ones included. */
  get acceptedConnections(): number {
    return this.#accepted;
  }

  /** Connections whose client side has not closed yet. */
  get openConnections(): number {
    return this.#pairs.size;
  }

  /** Stops passing bytes on every connection, and holds new ones. */
  freeze(): void {
    this.#frozen = true;
    for (const pair of this.#pairs) {
      if (pair.upstream !== undefined) {
        pair.client.unpipe(pair.upstream);
        pair.upstream.unpipe(pair.client);
        pair.client.pause();
        pair.upstream.pause();
      }
    }
  }

  /**
   * Passes the clients' bytes on to the target but holds the target's
   * replies, on every connection and each new one, until {@link release}.
   * Does nothing while frozen.
   */
  holdReplies(): void {
    if (this.#frozen || this.#holdingReplies) {
      return;
    }
    this.#holdingReplies = true;
    for (const pair of this.#pairs) {
      pair.upstream?.unpipe(pair.client);
      pair.upstream?.pause();
    }
  }

  /**
   * Passes bytes again on every connection that a freeze or a hold of the
   * replies stopped, connects the ones that arrived meanwhile, and passes
   * each new one through. Does nothing unless frozen or holding, because
   * piping a connection twice would send its bytes twice.
   */
  release(): void {
    if (this.#holdingReplies && !this.#frozen) {
      this.#holdingReplies = false;
      for (const pair of this.#pairs) {
        pair.upstream?.pipe(pair.client);
        pair.upstream?.resume();
      }
      return;
    }
    if (!this.#frozen) {
      return;
    }
    this.#frozen = false;
    this.#holdingReplies = false;
    for (const pair of this.#pairs) {
      if (pair.upstream === undefined) {
        this.#connect(pair);
      } else {
        pair.client.pipe(pair.upstream);
        pair.upstream.pipe(pair.client);
      }
      pair.client.resume();
      pair.upstream?.resume();
    }
  }

  /** Resolves once the proxy has accepted a connection. */
  async connected(): Promise<void> {
    if (this.#accepted === 0) {
      await once(this.server, "connection");
    }
  }

  /** Resets every connection with a TCP RST, and each new one until {@link thaw}. */
  cut(): void {
    this.#cut = true;
    for (const pair of this.#pairs) {
      pair.client.resetAndDestroy();
      pair.upstream?.destroy();
    }
    this.#pairs.clear();
  }

  /** Closes the frozen connections and passes new ones through again. */
  thaw(): void {
    this.#frozen = false;
    this.#holdingReplies = false;
    this.#cut = false;
    for (const pair of this.#pairs) {
      pair.client.destroy();
      pair.upstream?.destroy();
    }
    this.#pairs.clear();
  }

  async close(): Promise<void> {
    this.thaw();
    const closed = once(this.server, "close");
    this.server.close();
    await closed;
  }

  #accept(client: net.Socket): void {
    this.#accepted += 1;
    if (this.#cut) {
      client.on("error", () => undefined);
      client.resetAndDestroy();
      return;
    }
    const pair: ProxiedPair = { client, upstream: undefined };
    this.#pairs.add(pair);
    client.on("error", () => undefined);
    client.on("close", () => {
      pair.upstream?.destroy();
      this.#pairs.delete(pair);
    });
    if (this.#frozen) {
      client.pause();
      return;
    }
    this.#connect(pair);
  }

  #connect(pair: ProxiedPair): void {
    const { client } = pair;
    const upstream = net.connect(this.target.port, this.target.host);
    pair.upstream = upstream;
    upstream.on("error", () => client.destroy());
    upstream.on("close", () => client.destroy());
    client.pipe(upstream);
    if (this.#holdingReplies) {
      upstream.pause();
    } else {
      upstream.pipe(client);
    }
  }
}

/** A client connection and, once the proxy connected it, its connection to the target. */
interface ProxiedPair {
  client: net.Socket;
  upstream: net.Socket | undefined;
}
