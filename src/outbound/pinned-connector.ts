import type { LookupAddress, LookupOptions } from "node:dns";
import type { LookupFunction } from "node:net";

import { buildConnector } from "undici";

import { parseIpAddress } from "./address-ranges.js";
import type { ResolvedAddress } from "./resolver.js";

/** The checks of `OutboundGuard` that a connection needs. */
export interface ConnectionChecks {
  checkedAddresses(hostName: string): Promise<ResolvedAddress[]>;
  checkLiteralHost(host: string): void;
}

/**
 * Builds an undici connector that opens a connection only to addresses
 * that passed the guard's checks.
 *
 * A host that is an IP address is checked before any socket exists. A
 * host name is resolved through the guard in place of Node.js's own
 * `dns.lookup`, so the socket connects only to the checked addresses that
 * the guard returns. When the name has come to resolve to a blocked
 * address since the check before the send, the connection fails before
 * the socket connects. The host name itself is kept: undici still sends it
 * in `Host` and as the TLS server name (SNI), and checks the certificate
 * against it.
 */
export function pinnedConnector(
  guard: ConnectionChecks,
  options: buildConnector.BuildOptions,
): buildConnector.connector {
  const connect = buildConnector({ ...options, lookup: pinnedLookup(guard) });

  return (target, callback) => {
    if (parseIpAddress(target.hostname) !== null) {
      try {
        guard.checkLiteralHost(target.hostname);
      } catch (error) {
        // undici expects the callback after connect returns, as a socket error would arrive.
        queueMicrotask(() => callback(error as Error, null));
        return;
      }
    }
    connect(target, callback);
  };
}

/** Builds the `lookup` option of `net.connect` that returns only checked addresses. */
function pinnedLookup(guard: ConnectionChecks): LookupFunction {
  return (hostName, options, callback) => {
    guard.checkedAddresses(hostName).then(
      (addresses) => {
        const family = familyOf(options);
        const usable = addresses.filter((entry) => family === 0 || entry.family === family);
        const first = usable[0];
        if (first === undefined) {
          const error = Object.assign(new Error(`no IPv${family} address found for host "${hostName}"`), {
            code: "ENOTFOUND",
          });
          callback(error, "");
        } else if (options.all === true) {
          const all: LookupAddress[] = usable.map(({ address, family }) => ({ address, family }));
          callback(null, all);
        } else {
          callback(null, first.address, first.family);
        }
      },
      (error: unknown) => callback(error as NodeJS.ErrnoException, ""),
    );
  };
}

/** Returns the address family that `net` asked for, 0 for any. */
function familyOf(options: LookupOptions): 0 | 4 | 6 {
  const family = options.family;
  if (family === 4 || family === "IPv4") {
    return 4;
  }
  if (family === 6 || family === "IPv6") {
    return 6;
  }
  return 0;
}
