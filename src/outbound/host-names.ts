/** Why a host name is blocked before it is resolved: the rule, and a sentence for messages. */
export interface BlockedName {
  /** Stable rule id: `localhost`, `metadata`, `private_domain` or `single_label`. */
  rule: string;
  description: string;
}

/**
 * Host names of cloud instance metadata services. Most resolve only inside
 * the cloud they belong to, and then to a link-local or private address,
 * which the address rules block as well.
 */
const METADATA_NAMES: ReadonlySet<string> = new Set([
  "metadata",
  "metadata.google.internal",
  "metadata.goog",
  "instance-data",
  "instance-data.ec2.internal",
  "metadata.azure.com",
  "metadata.tencentyun.com",
  "rancher-metadata",
]);

/**
 * Domains that name hosts on a private network: `local` (multicast DNS,
 * RFC 6762), `home.arpa` (RFC 8375), `internal` (reserved by ICANN for
 * private use) and the conventional `localdomain`.
 */
const PRIVATE_DOMAINS: readonly string[] = ["local", "home.arpa", "internal", "localdomain"];

/**
 * Returns a host name as the rules compare it: lower case, with trailing
 * dots removed, so `LOCALHOST.` and `localhost` are the same name.
 */
export function normalizeHostName(name: string): string {
  return name.toLowerCase().replace(/\.+$/, "");
}

/**
 * Returns why a host name (not an IP address) must not be contacted, or
 * null when only its resolved addresses decide.
 *
 * Single-label names such as `gateway` are blocked because the resolver
 * completes them with the local search domains, so they name hosts of the
 * network the service runs in.
 */
export function blockedHostName(hostName: string): BlockedName | null {
  const name = normalizeHostName(hostName);
  if (name === "localhost" || name.endsWith(".localhost")) {
    // RFC 6761 reserves these names for the loopback address.
    return { rule: "localhost", description: "is a name of the local machine" };
  }
  if (METADATA_NAMES.has(name)) {
    return { rule: "metadata", description: "is the name of a cloud instance metadata service" };
  }
  const domain = PRIVATE_DOMAINS.find((suffix) => name === suffix || name.endsWith(`.${suffix}`));
  if (domain !== undefined) {
    return { rule: "private_domain", description: `is in the domain "${domain}", which names private hosts` };
  }
  if (!name.includes(".")) {
    return {
      rule: "single_label",
      description: "is a single-label name, which the resolver completes with the local search domains",
    };
  }
  return null;
}
