import ipaddr from "ipaddr.js";

/** An IPv4 or IPv6 address as ipaddr.js parses it. */
export type IpAddress = ipaddr.IPv4 | ipaddr.IPv6;

/** IPv4-compatible IPv6 addresses (RFC 4291, deprecated), which ipaddr.js 2.5 calls unicast. */
const IPV4_COMPATIBLE = ipaddr.IPv6.parseCIDR("::/96");
/** Dummy IPv6 prefix (RFC 9780), which ipaddr.js 2.5 does not know. */
const DUMMY_PREFIX = ipaddr.IPv6.parseCIDR("100:0:0:1::/64");
/** Local-use NAT64 prefix (RFC 8215), not globally reachable and with no fixed place for the IPv4 address. */
const NAT64_LOCAL_USE = ipaddr.IPv6.parseCIDR("64:ff9b:1::/48");
/** Global unicast space; IANA has allocated nothing outside it for public use. */
const GLOBAL_UNICAST = ipaddr.IPv6.parseCIDR("2000::/3");

/**
 * Parses an IP address in its standard text form, the form that URL parsing
 * and `dns.lookup` produce, and turns an IPv4-mapped IPv6 address into the
 * IPv4 address that a socket connects to. Returns null for anything else,
 * including short and numeric IPv4 forms. A zone id (`%eth0`) is dropped.
 */
export function parseIpAddress(text: string): IpAddress | null {
  const bare = text.startsWith("[") && text.endsWith("]") ? text.slice(1, -1) : text;
  if (ipaddr.IPv4.isValidFourPartDecimal(bare)) {
    return ipaddr.IPv4.parse(bare);
  }
  const hex = bare.includes(":") ? hexIpv6(bare) : null;
  if (hex === null || !ipaddr.IPv6.isValid(hex)) {
    return null;
  }
  const address = ipaddr.IPv6.parse(hex);
  return address.isIPv4MappedAddress() ? address.toIPv4Address() : address;
}

/**
 * Rewrites an IPv6 address in hex groups only, without a zone id, or
 * returns null when it is not one. ipaddr.js 2.5 reads `::127.0.0.1` as
 * `::ffff:127.0.0.1`, and glibc writes IPv4-compatible addresses in that
 * dotted form, so the WHATWG URL parser, which writes hex groups, goes first.
 */
function hexIpv6(text: string): string | null {
  const zone = text.indexOf("%");
  try {
    return new URL(`http://[${zone === -1 ? text : text.slice(0, zone)}]/`).hostname.slice(1, -1);
  } catch {
    return null;
  }
}

/**
 * Returns the name of the special-purpose range that blocks an address, or
 * null for a public unicast address.
 *
 * Names are those of ipaddr.js `range()` (for example `loopback`, `private`,
 * `linkLocal`, `reserved`), plus `ipv4Compatible`, `dummyPrefix`,
 * `nat64LocalUse` and `notGlobalUnicast` for IPv6 ranges it calls unicast.
 * An IPv6 address that carries an IPv4 address (IPv4-translated, NAT64,
 * 6to4, Teredo, IPv4-compatible) is judged by that IPv4 address, and the
 * name then joins both ranges, as in `6to4/loopback`.
 */
export function blockedRange(address: IpAddress): string | null {
  if (address instanceof ipaddr.IPv4) {
    const range = address.range();
    return range === "unicast" ? null : range;
  }

  const range = address.range();
  switch (range) {
    case "unicast":
      return blockedUnicastV6(address);
    case "ipv4Mapped":
    case "rfc6145":
      return blockedEmbedded(range, [ipv4At(address, 6)]);
    case "rfc6052":
      return address.match(NAT64_LOCAL_USE) ? "nat64LocalUse" : blockedEmbedded(range, [ipv4At(address, 6)]);
    case "6to4":
      return blockedEmbedded(range, [ipv4At(address, 1)]);
    case "teredo":
      // The Teredo server's address is in plain form, the client's public address bit-inverted.
      return blockedEmbedded(range, [ipv4At(address, 2), invert(ipv4At(address, 6))]);
    default:
      return range;
  }
}

/** Judges the IPv6 addresses that ipaddr.js 2.5 calls unicast. */
function blockedUnicastV6(address: ipaddr.IPv6): string | null {
  if (address.match(IPV4_COMPATIBLE)) {
    return blockedEmbedded("ipv4Compatible", [ipv4At(address, 6)]);
  }
  if (address.match(DUMMY_PREFIX)) {
    return "dummyPrefix";
  }
  if (!address.match(GLOBAL_UNICAST)) {
    return "notGlobalUnicast";
  }
  return null;
}

function blockedEmbedded(outer: string, embedded: ipaddr.IPv4[]): string | null {
  for (const inner of embedded) {
    const range = blockedRange(inner);
    if (range !== null) {
      return `${outer}/${range}`;
    }
  }
  return null;
}

/** Returns the IPv4 address in 16-bit groups `group` and `group + 1` of an IPv6 address. */
function ipv4At(address: ipaddr.IPv6, group: number): ipaddr.IPv4 {
  const high = address.parts[group] ?? 0;
  const low = address.parts[group + 1] ?? 0;
  return new ipaddr.IPv4([high >> 8, high & 0xff, low >> 8, low & 0xff]);
}

function invert(address: ipaddr.IPv4): ipaddr.IPv4 {
  return new ipaddr.IPv4(address.octets.map((octet) => ~octet & 0xff));
}
