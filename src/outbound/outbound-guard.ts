import type { buildConnector } from "undici";

import type { IntegrationFields } from "../domain/integration.js";
import { OutboundBlockedError, type GatewayStage } from "../errors.js";
import { untilAborted } from "../until-aborted.js";
import { blockedRange, parseIpAddress, type IpAddress } from "./address-ranges.js";
import type { OutboundAllowList } from "./allow-list.js";
import { blockedHostName, normalizeHostName } from "./host-names.js";
import { pinnedConnector } from "./pinned-connector.js";
import { systemResolver, type ResolvedAddress, type Resolver } from "./resolver.js";

/** A URL of an integration that the service sends requests to. */
export interface OutboundTarget {
  stage: GatewayStage;
  /** Request path of the URL, such as `integration.base_url`. */
  field: string;
  url: string;
}

/** A host name that did not resolve when the integration was saved. */
export interface UnresolvedHost {
  field: string;
  host: string;
  /** Error code of the resolver, such as `ENOTFOUND`. */
  code: string;
}

export interface OutboundGuardOptions {
  allowList: OutboundAllowList;
  /** Resolves host names; the operating system's resolver when unset. */
  resolver?: Resolver;
}

const SCHEMES: ReadonlySet<string> = new Set(["http:", "https:"]);

/** Number of passed URLs that the guard remembers before it starts over. */
const MAX_REMEMBERED_URLS = 10_000;

/** Returns the request path of the URL that a stage of a send goes to. */
export function outboundField(stage: GatewayStage): string {
  return stage === "auth" ? "integration.auth_url" : "integration.base_url";
}

/**
 * Returns the URLs an integration sends requests to, in the order of a
 * send: `auth_url` first with token authentication, then `base_url`.
 */
export function outboundTargets(fields: IntegrationFields): OutboundTarget[] {
  const targets: OutboundTarget[] = [];
  if (fields.authenticateByToken) {
    targets.push({ stage: "auth", field: outboundField("auth"), url: fields.authUrl });
  }
  targets.push({ stage: "send", field: outboundField("send"), url: fields.baseUrl });
  return targets;
}

/**
 * The SSRF guard: keeps the service's requests away from the network it
 * runs in.
 *
 * A URL passes when its scheme is http or https, it has no user info, its
 * host name is not a local, private or cloud metadata name, and every
 * address of the host is public unicast. The host is judged as the WHATWG
 * URL parser (which undici uses) reads it, so numeric, octal, hex and
 * short IPv4 forms and every IPv6 spelling reach the address rules in
 * standard form. `OUTBOUND_ALLOW` entries lift the name and address rules
 * (see `OutboundAllowList`), never the scheme and user info rules.
 *
 * URLs are checked when an integration is saved and before each send.
 * `connector` checks again when a connection opens, and connects only to
 * the addresses it checked. So a DNS record that changes between the check
 * and the connection (DNS rebinding) cannot lead to a blocked address.
 */
export class OutboundGuard {
  private readonly allowList: OutboundAllowList;
  private readonly resolver: Resolver;
  /** URLs with an IP address as host that passed, so a send skips parsing them again. */
  private readonly passedLiteralUrls = new Map<string, ResolvedAddress>();

  constructor(options: OutboundGuardOptions) {
    this.allowList = options.allowList;
    this.resolver = options.resolver ?? systemResolver;
  }

  /**
   * Checks one URL, resolving its host name when it has one, and returns
   * the addresses it checked: every address of the host name, or the
   * address that is the host.
   *
   * @throws OutboundBlockedError naming `field` when the URL is blocked.
   * @throws the resolver's error (with a `code` such as `ENOTFOUND`) when
   *   the host name does not resolve, or `signal.reason` when it aborts first.
   */
  async checkUrl(field: string, url: string, signal?: AbortSignal): Promise<ResolvedAddress[]> {
    const passed = this.passedLiteralUrls.get(url);
    if (passed !== undefined) {
      return [passed];
    }

    const host = this.checkedUrlHost(field, url);
    const literal = parseIpAddress(host);
    if (literal !== null) {
      this.checkLiteralHost(host, field);
      const address: ResolvedAddress = { address: literal.toString(), family: literal.kind() === "ipv6" ? 6 : 4 };
      this.rememberPassedLiteral(url, address);
      return [address];
    }
    return untilAborted(this.checkedAddresses(host, field), signal);
  }

  /**
   * Remembers a URL whose host is an IP address that passed. Its verdict
   * cannot change while the service runs, because no DNS answer is involved
   * and the allow-list is fixed at start-up.
   */
  private rememberPassedLiteral(url: string, address: ResolvedAddress): void {
    if (this.passedLiteralUrls.size >= MAX_REMEMBERED_URLS) {
      this.passedLiteralUrls.clear();
    }
    this.passedLiteralUrls.set(url, Object.freeze(address));
  }

  /**
   * Checks the URLs of an integration that is about to be saved.
   *
   * A host name that does not resolve now is accepted and returned, so
   * that saving does not depend on DNS: the check before each send judges
   * its addresses then.
   *
   * @throws OutboundBlockedError when a URL is blocked.
   */
  async checkIntegration(fields: IntegrationFields): Promise<UnresolvedHost[]> {
    const unresolved: UnresolvedHost[] = [];
    for (const target of outboundTargets(fields)) {
      try {
        await this.checkUrl(target.field, target.url);
      } catch (error) {
        const code = resolverErrorCode(error);
        if (code === undefined) {
          throw error;
        }
        unresolved.push({ field: target.field, host: new URL(target.url).hostname, code });
      }
    }
    return unresolved;
  }

  /**
   * Returns every address of a host name after checking them all: the
   * name must pass the name rules, and every address the address rules,
   * unless the allow-list names the host.
   *
   * @throws OutboundBlockedError naming `field` when the name or any address is blocked.
   */
  async checkedAddresses(hostName: string, field = ""): Promise<ResolvedAddress[]> {
    const name = normalizeHostName(hostName);
    if (this.allowList.allowsHostName(name)) {
      return this.resolve(name);
    }

    const blockedName = blockedHostName(name);
    if (blockedName !== null) {
      throw new OutboundBlockedError(
        field,
        "OUTBOUND_HOST_BLOCKED",
        `host "${hostName}" ${blockedName.description}, and the SSRF guard blocks it. ` +
          `If it is a gateway on a private network you trust, add "${name}" to OUTBOUND_ALLOW.`,
        { host: hostName, rule: blockedName.rule },
      );
    }

    const addresses = await this.resolve(name);
    for (const { address } of addresses) {
      const parsed = parseIpAddress(address);
      const range = parsed === null ? "invalid" : this.blockingRange(parsed);
      if (range !== null) {
        throw new OutboundBlockedError(
          field,
          "OUTBOUND_ADDRESS_BLOCKED",
          `host "${hostName}" resolves to ${address}, which is in the ${range} range that the SSRF guard blocks. ` +
            `If it is a gateway on a private network you trust, add "${name}" or ${address} to OUTBOUND_ALLOW.`,
          { host: hostName, address, range },
        );
      }
    }
    return addresses;
  }

  /**
   * Checks a host that is an IP address in standard form, as in a URL
   * after parsing.
   *
   * @throws OutboundBlockedError naming `field` when the address is blocked.
   */
  checkLiteralHost(host: string, field = ""): void {
    const address = parseIpAddress(host);
    const range = address === null ? "invalid" : this.blockingRange(address);
    if (range === null) {
      return;
    }
    const shown = address?.toString() ?? host;
    throw new OutboundBlockedError(
      field,
      "OUTBOUND_ADDRESS_BLOCKED",
      `address ${host} is in the ${range} range that the SSRF guard blocks. ` +
        `If it is a gateway on a private network you trust, add ${shown} to OUTBOUND_ALLOW.`,
      { host, address: shown, range },
    );
  }

  /**
   * Builds the undici connector that checks each new connection and pins
   * it to checked addresses. See `pinnedConnector`.
   */
  connector(options: buildConnector.BuildOptions): buildConnector.connector {
    return pinnedConnector(this, options);
  }

  /** Returns the range that blocks an address, or null when it is public or allowed. */
  private blockingRange(address: IpAddress): string | null {
    return this.allowList.allowsAddress(address) ? null : blockedRange(address);
  }

  private async resolve(name: string): Promise<ResolvedAddress[]> {
    const addresses = await this.resolver.resolve(name);
    if (addresses.length === 0) {
      throw Object.assign(new Error(`no addresses found for host "${name}"`), { code: "ENOTFOUND" });
    }
    return addresses;
  }

  /** Applies the URL rules that need no DNS and returns the host as the URL parser wrote it. */
  private checkedUrlHost(field: string, url: string): string {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new OutboundBlockedError(
        field,
        "OUTBOUND_URL_INVALID",
        "is not a valid absolute URL; write it as https://host/path",
        {},
      );
    }
    if (!SCHEMES.has(parsed.protocol)) {
      const scheme = parsed.protocol.slice(0, -1);
      throw new OutboundBlockedError(
        field,
        "OUTBOUND_SCHEME_BLOCKED",
        `scheme "${scheme}" is not allowed; use http or https`,
        { scheme },
      );
    }
    if (parsed.username !== "" || parsed.password !== "") {
      throw new OutboundBlockedError(
        field,
        "OUTBOUND_USERINFO_BLOCKED",
        "must not contain a user name or password; put credentials in the API-key headers",
        { host: parsed.hostname },
      );
    }
    return parsed.hostname;
  }
}

/** Returns the code of a resolver error, such as `ENOTFOUND`, or undefined for any other error. */
export function resolverErrorCode(error: unknown): string | undefined {
  if (error instanceof OutboundBlockedError || typeof error !== "object" || error === null) {
    return undefined;
  }
  const code = (error as { code?: unknown }).code;
  return typeof code === "string" ? code : undefined;
}
