import { subscribe, unsubscribe } from "node:diagnostics_channel";

/**
 * Counts the TCP client sockets this process creates, through the
 * `net.client.socket` diagnostics channel that Node.js 20 publishes on
 * every `net.connect` (but not on `tls.connect`), so a test can prove that
 * a plain-HTTP request opened no socket at all.
 */
export class SocketCounter {
  /** Sockets created since `start`. */
  count = 0;

  private readonly onSocket = (): void => {
    this.count++;
  };

  start(): this {
    subscribe("net.client.socket", this.onSocket);
    return this;
  }

  stop(): void {
    unsubscribe("net.client.socket", this.onSocket);
  }
}
