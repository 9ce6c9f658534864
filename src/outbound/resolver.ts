import { lookup } from "node:dns/promises";

/** One address of a host name. */
export interface ResolvedAddress {
  address: string;
  family: 4 | 6;
}

/**
 * Resolves host names for the SSRF guard. The guard judges every address
 * returned and connects only to those, so tests replace the resolver to
 * map names to any address without DNS.
 */
export interface Resolver {
  /**
   * Returns every address of a host name.
   *
   * @throws Error with a `code` such as `ENOTFOUND` when the name does not resolve.
   */
  resolve(hostName: string): Promise<ResolvedAddress[]>;
}

/**
 * Resolves through the operating system (`dns.lookup` with `all: true`),
 * as Node.js does for its own connections, so `/etc/hosts` and the search
 * domains apply.
 */
export const systemResolver: Resolver = {
  async resolve(hostName) {
    const addresses = await lookup(hostName, { all: true });
    return addresses.map(({ address, family }) => ({ address, family: family === 6 ? 6 : 4 }));
  },
};
