import { OutboundAllowList } from "../../src/outbound/allow-list.js";
import type { ResolvedAddress, Resolver } from "../../src/outbound/resolver.js";

/**
 * The allow-list that tests run with, so that the SSRF guard lets requests
 * reach the loopback gateways the tests start.
 */
export const LOOPBACK_ALLOW_LIST = OutboundAllowList.parse("127.0.0.1/32,::1/128");

/**
 * A resolver that reads addresses from a table instead of DNS, so tests can map
 * any name to any address without a query leaving the machine. Names not
 * in the table fail with `ENOTFOUND`, as an unknown name would.
 */
export class StubResolver implements Resolver {
  /** Every name asked for, in order. */
  readonly queries: string[] = [];
  private readonly results = new Map<string, string[][]>();

  /** Maps a name to addresses. A second call for the same name queues a later result, and the last result repeats. */
  set(name: string, ...addresses: string[]): this {
    const queue = this.results.get(name) ?? [];
    queue.push(addresses);
    this.results.set(name, queue);
    return this;
  }

  /** Replaces every queued result for a name. */
  reset(name: string, ...addresses: string[]): this {
    this.results.set(name, [addresses]);
    return this;
  }

  async resolve(hostName: string): Promise<ResolvedAddress[]> {
    this.queries.push(hostName);
    const queue = this.results.get(hostName);
    const next = queue !== undefined && queue.length > 1 ? queue.shift() : queue?.[0];
    if (next === undefined) {
      throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostName}`), { code: "ENOTFOUND", hostname: hostName });
    }
    return next.map((address) => ({ address, family: address.includes(":") ? 6 : 4 }));
  }
}
