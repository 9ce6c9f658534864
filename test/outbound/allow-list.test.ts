import { describe, expect, test } from "vitest";

import { ConfigError, loadConfig } from "../../src/config/load-config.js";
import { parseIpAddress } from "../../src/outbound/address-ranges.js";
import { OutboundAllowList } from "../../src/outbound/allow-list.js";

function address(text: string) {
  const parsed = parseIpAddress(text);
  if (parsed === null) {
    throw new Error(`test address ${text} does not parse`);
  }
  return parsed;
}

describe("OutboundAllowList.parse", () => {
  test("reads CIDRs, bare addresses and host names", () => {
    const list = OutboundAllowList.parse(" 10.0.0.0/8, SMS.Internal. ,127.0.0.1,fd00::/8,::1,");

    expect(list.entries).toEqual(["10.0.0.0/8", "sms.internal", "127.0.0.1/32", "fd00::/8", "::1/128"]);
    expect(list.allowsAddress(address("10.200.0.1"))).toBe(true);
    expect(list.allowsAddress(address("11.0.0.1"))).toBe(false);
    expect(list.allowsAddress(address("127.0.0.1"))).toBe(true);
    expect(list.allowsAddress(address("127.0.0.2"))).toBe(false);
    expect(list.allowsAddress(address("fd12::1"))).toBe(true);
    expect(list.allowsAddress(address("::1"))).toBe(true);
    expect(list.allowsAddress(address("::ffff:10.0.0.1"))).toBe(true);
    expect(list.allowsHostName("sms.internal")).toBe(true);
    expect(list.allowsHostName("SMS.INTERNAL.")).toBe(true);
    expect(list.allowsHostName("other.internal")).toBe(false);
  });

  test("empty text is the empty list", () => {
    const list = OutboundAllowList.parse("");

    expect(list).toBe(OutboundAllowList.EMPTY);
    expect(list.allowsAddress(address("127.0.0.1"))).toBe(false);
  });

  test("stores an internationalized name in ASCII form", () => {
    expect(OutboundAllowList.parse("bücher.example").entries).toEqual(["xn--bcher-kva.example"]);
  });

  test.each([
    ["10.0.0.1/8", /host bits set; write the network address, 10\.0\.0\.0\/8/],
    ["10.0.0.0/33", /invalid prefix length; use 0 to 32/],
    ["fd00::/129", /invalid prefix length; use 0 to 128/],
    ["10.0.0.0/", /invalid prefix length/],
    ["10.0/8", /is not a CIDR/],
    ["::ffff:10.0.0.0/104", /IPv4-mapped IPv6 network/],
    ["127.1", /short or numeric form; write it in full, as 127\.0\.0\.1/],
    ["2130706433", /short or numeric form/],
    ["*.sms.internal", /without scheme, port or wildcard/],
    ["http://sms.internal", /without scheme, port or wildcard/],
    ["sms.internal:8443", /without scheme, port or wildcard/],
    ["sms internal", /without scheme, port or wildcard/],
    ["sms%zz.internal", /not a valid host name/],
    ["300.1.1.1", /^entry "300\.1\.1\.1" is neither a valid IP address nor a valid host name: octet 300 is over 255; write an IPv4 address as four numbers from 0 to 255/],
    ["10.0.0.256", /neither a valid IP address nor a valid host name: octet 256 is over 255/],
    ["1.2.3.4.5", /neither a valid IP address nor a valid host name: it has 5 numbers and an IPv4 address has 4/],
    ["sms.1", /neither a valid IP address nor a valid host name: a host name must not end in a number/],
    ["4294967296", /neither a valid IP address nor a valid host name: a host name must not end in a number/],
    ["300.1.1.0/24", /^entry "300\.1\.1\.0\/24" is not a CIDR: 300\.1\.1\.0 is not a valid IPv4 address because octet 300 is over 255/],
  ])("rejects %j", (text, message) => {
    expect(() => OutboundAllowList.parse(text)).toThrow(message);
  });
});

describe("OUTBOUND_ALLOW setting", () => {
  function allowEntries(argv: string[], env: Record<string, string>): readonly string[] {
    const loaded = loadConfig(argv, env);
    if (loaded.kind !== "run") {
      throw new Error("expected a configuration");
    }
    return loaded.config.outboundAllow.entries;
  }

  test("defaults to the empty list", () => {
    expect(allowEntries([], {})).toEqual([]);
  });

  test("flag beats environment", () => {
    expect(allowEntries(["--outbound-allow", "192.168.0.0/16"], { OUTBOUND_ALLOW: "10.0.0.0/8" })).toEqual(["192.168.0.0/16"]);
  });

  test("invalid entry fails start-up naming the setting", () => {
    const load = () => loadConfig([], { OUTBOUND_ALLOW: "10.0.0.0/8,10.1.2.3/16" });

    expect(load).toThrow(ConfigError);
    expect(load).toThrow(/^OUTBOUND_ALLOW: invalid value "10\.0\.0\.0\/8,10\.1\.2\.3\/16": entry "10\.1\.2\.3\/16" has host bits set/);
  });
});
