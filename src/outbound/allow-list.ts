import ipaddr from "ipaddr.js";

import { parseIpAddress, type IpAddress } from "./address-ranges.js";
import { normalizeHostName } from "./host-names.js";

/** A network: its first address and its prefix length. */
type Network = [IpAddress, number];

/**
 * The `OUTBOUND_ALLOW` list: networks and host names that the SSRF guard
 * lets through although its rules would block them, for gateways on
 * private networks.
 *
 * A CIDR entry, or a bare address taken as /32 or /128, allows the
 * addresses in it whichever host name resolved to them, but the host name
 * rules still apply to names. A host name entry allows that exact name and
 * every address it resolves to, so trust a name only when its DNS records
 * are under your control.
 */
export class OutboundAllowList {
  static readonly EMPTY = new OutboundAllowList([], new Set(), []);

  private constructor(
    private readonly networks: readonly Network[],
    private readonly hostNames: ReadonlySet<string>,
    /** The entries in normalized form, for logs. */
    readonly entries: readonly string[],
  ) {}

  /**
   * Parses a comma-separated list such as `10.0.0.0/8,sms.internal,127.0.0.1`.
   * Blank entries are skipped.
   *
   * @throws Error naming the first invalid entry and how to write it.
   */
  static parse(text: string): OutboundAllowList {
    const networks: Network[] = [];
    const hostNames = new Set<string>();
    const entries: string[] = [];
    for (const raw of text.split(",")) {
      const entry = raw.trim();
      if (entry === "") {
        continue;
      }
      const parsed = parseEntry(entry);
      if (typeof parsed === "string") {
        hostNames.add(parsed);
        entries.push(parsed);
      } else {
        networks.push(parsed);
        entries.push(`${parsed[0].toString()}/${parsed[1]}`);
      }
    }
    return entries.length === 0 ? OutboundAllowList.EMPTY : new OutboundAllowList(networks, hostNames, entries);
  }

  /** Returns true when a host name entry names this host, compared in lower case without trailing dots. */
  allowsHostName(hostName: string): boolean {
    return this.hostNames.has(normalizeHostName(hostName));
  }

  /** Returns true when a CIDR entry contains the address. */
  allowsAddress(address: IpAddress): boolean {
    return this.networks.some(([network, bits]) => network.kind() === address.kind() && address.match(network, bits));
  }

  toString(): string {
    return this.entries.join(",");
  }
}

/** Parses one entry into a network, or into a normalized host name. */
function parseEntry(entry: string): Network | string {
  const slash = entry.indexOf("/");
  if (slash !== -1 && !entry.includes("://")) {
    return parseNetwork(entry, entry.slice(0, slash), entry.slice(slash + 1));
  }

  const address = parseIpAddress(entry);
  if (address !== null) {
    return [address, address.kind() === "ipv4" ? 32 : 128];
  }
  return parseHostName(entry);
}

function parseNetwork(entry: string, addressText: string, bitsText: string): Network {
  const address = parseIpAddress(addressText);
  if (address === null) {
    const problem = dottedNumbersProblem(addressText);
    const reason = problem === undefined ? "" : `: ${addressText} is not a valid IPv4 address because ${problem}`;
    throw new Error(`entry "${entry}" is not a CIDR${reason}; write it as 10.0.0.0/8 or fd00::/8`);
  }
  if (address.kind() === "ipv4" && addressText.includes(":")) {
    throw new Error(`entry "${entry}" is an IPv4-mapped IPv6 network; write the IPv4 network instead`);
  }

  const maxBits = address.kind() === "ipv4" ? 32 : 128;
  const bits = /^\d{1,3}$/.test(bitsText) ? Number(bitsText) : NaN;
  if (!(bits <= maxBits)) {
    throw new Error(`entry "${entry}" has an invalid prefix length; use 0 to ${maxBits}`);
  }

  const network =
    address.kind() === "ipv4"
      ? ipaddr.IPv4.networkAddressFromCIDR(`${address.toString()}/${bits}`)
      : ipaddr.IPv6.networkAddressFromCIDR(`${address.toString()}/${bits}`);
  if (network.toString() !== address.toString()) {
    throw new Error(`entry "${entry}" has host bits set; write the network address, ${network.toString()}/${bits}`);
  }
  return [address, bits];
}

function parseHostName(entry: string): string {
  if (/[\s:/@?#*\\]/.test(entry)) {
    throw new Error(`entry "${entry}" is not a host name, IP address or CIDR; write a name such as sms.internal, without scheme, port or wildcard`);
  }
  let hostName: string;
  try {
    hostName = new URL(`http://${entry}/`).hostname;
  } catch {
    throw new Error(`entry "${entry}" is ${invalidNameReason(entry)}`);
  }
  if (parseIpAddress(hostName) !== null) {
    throw new Error(`entry "${entry}" is an IP address in a short or numeric form; write it in full, as ${hostName}`);
  }
  return normalizeHostName(hostName);
}

/**
 * Explains why the URL parser rejected an entry as a host name. A name whose
 * last label is a number, such as `300.1.1.1` or `sms.1`, is parsed as an
 * IPv4 address (WHATWG URL standard, "ends in a number"), so the reason
 * names the IPv4 problem.
 */
function invalidNameReason(entry: string): string {
  const labels = entry.replace(/\.$/, "").split(".");
  if (!/^(\d+|0x[0-9a-f]*)$/i.test(labels.at(-1) ?? "")) {
    return "not a valid host name";
  }
  const problem = dottedNumbersProblem(entry) ?? "a host name must not end in a number, because such a name is parsed as an IPv4 address";
  return `neither a valid IP address nor a valid host name: ${problem}; write an IPv4 address as four numbers from 0 to 255, such as 10.0.0.1`;
}

/**
 * Returns what is wrong with dotted decimal numbers that look like an IPv4
 * address but are not one: more than four numbers, or four with an octet
 * over 255. Returns undefined for other text.
 */
function dottedNumbersProblem(text: string): string | undefined {
  const labels = text.replace(/\.$/, "").split(".");
  if (!labels.every((label) => /^\d+$/.test(label))) {
    return undefined;
  }
  if (labels.length > 4) {
    return `it has ${labels.length} numbers and an IPv4 address has 4`;
  }
  const tooLarge = labels.length === 4 ? labels.find((label) => Number(label) > 255) : undefined;
  return tooLarge === undefined ? undefined : `octet ${tooLarge} is over 255`;
}
