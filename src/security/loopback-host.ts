import ipaddr from "ipaddr.js";

/**
 * Returns whether listening on `host` accepts connections from this machine
 * only: `localhost`, 127.0.0.0/8, `::1`, or 127.0.0.0/8 written as an
 * IPv4-mapped IPv6 address. Other host names are not resolved, so they count
 * as reachable from other hosts.
 */
export function isLoopbackHost(host: string): boolean {
  const bare = host.trim().replace(/^\[(.*)\]$/, "$1");
  if (bare.toLowerCase() === "localhost") {
    return true;
  }
  if (!ipaddr.isValid(bare)) {
    return false;
  }
  return ipaddr.process(bare).range() === "loopback";
}
