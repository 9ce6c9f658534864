import net from "node:net";

/**
 * Tells whether the authority a request was addressed to (its `Host`
 * header, or `:authority` in HTTP/2) names this machine's loopback
 * interface: `localhost`, a name under `.localhost`, an address in
 * 127.0.0.0/8, or `[::1]`, with or without a port.
 *
 * With caller authentication off, the service serves only such requests.
 * A web page whose own host name an attacker re-points at 127.0.0.1 (DNS
 * rebinding) sends its own name as the Host, so it is rejected.
 */
export function isLoopbackAuthority(authority: string | undefined): boolean {
  if (authority === undefined || authority === "") {
    return false;
  }

  let host = authority.trim().toLowerCase();
  if (host.startsWith("[")) {
    const end = host.indexOf("]");
    host = end === -1 ? host : host.slice(1, end);
  } else {
    host = host.replace(/:\d*$/, "");
  }
  host = host.replace(/\.$/, "");

  if (host === "localhost" || host.endsWith(".localhost")) {
    return true;
  }
  if (net.isIPv4(host)) {
    return host.startsWith("127.");
  }
  return net.isIPv6(host) && (host === "::1" || host === "0:0:0:0:0:0:0:1");
}
