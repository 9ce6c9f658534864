import { describe, expect, test } from "vitest";

import { blockedRange, parseIpAddress } from "../../src/outbound/address-ranges.js";
import { blockedHostName } from "../../src/outbound/host-names.js";

function rangeOf(text: string): string | null {
  const address = parseIpAddress(text);
  if (address === null) {
    throw new Error(`test address ${text} does not parse`);
  }
  return blockedRange(address);
}

describe("blockedRange", () => {
  test.each([
    ["0.0.0.0", "unspecified"],
    ["0.1.2.3", "unspecified"],
    ["10.20.30.40", "private"],
    ["172.16.0.1", "private"],
    ["172.31.255.254", "private"],
    ["192.168.0.1", "private"],
    ["100.64.0.1", "carrierGradeNat"],
    ["100.127.255.254", "carrierGradeNat"],
    ["127.0.0.1", "loopback"],
    ["127.255.255.254", "loopback"],
    ["169.254.169.254", "linkLocal"],
    ["192.0.0.8", "reserved"],
    ["192.0.2.1", "reserved"],
    ["192.88.99.1", "reserved"],
    ["198.18.0.1", "reserved"],
    ["198.19.255.254", "reserved"],
    ["198.51.100.1", "reserved"],
    ["203.0.113.1", "reserved"],
    ["224.0.0.251", "multicast"],
    ["239.255.255.250", "multicast"],
    ["240.0.0.1", "reserved"],
    ["255.255.255.255", "broadcast"],
    ["192.31.196.1", "as112"],
    ["192.52.193.1", "amt"],
  ])("IPv4 %s is %s", (address, range) => {
    expect(rangeOf(address)).toBe(range);
  });

  test.each([
    ["::", "unspecified"],
    ["::1", "loopback"],
    ["fe80::1", "linkLocal"],
    ["fe80::1%eth0", "linkLocal"],
    ["febf:ffff::1", "linkLocal"],
    ["fc00::1", "uniqueLocal"],
    ["fd00:ec2::254", "uniqueLocal"],
    ["fec0::1", "deprecatedSiteLocal"],
    ["ff02::1", "multicast"],
    ["100::1", "discard"],
    ["100:0:0:1::1", "dummyPrefix"],
    ["2001:db8::1", "reserved"],
    ["2001:2::1", "benchmarking"],
    ["2001:20::1", "orchid2"],
    ["2001:10::1", "deprecatedOrchid"],
    ["3fff::1", "reserved"],
    ["5f00::1", "segmentRouting"],
    ["64:ff9b:1::808:808", "nat64LocalUse"],
    ["4000::1", "notGlobalUnicast"],
    ["1::1", "notGlobalUnicast"],
  ])("IPv6 %s is %s", (address, range) => {
    expect(rangeOf(address)).toBe(range);
  });

  test.each([
    ["::ffff:127.0.0.1", "loopback"],
    ["::ffff:7f00:1", "loopback"],
    ["0:0:0:0:0:ffff:a9fe:a9fe", "linkLocal"],
    ["::ffff:0:7f00:1", "rfc6145/loopback"],
    ["::127.0.0.1", "ipv4Compatible/loopback"],
    ["::a00:1", "ipv4Compatible/private"],
    ["::2", "ipv4Compatible/unspecified"],
    ["64:ff9b::a9fe:a9fe", "rfc6052/linkLocal"],
    ["64:ff9b::10.0.0.1", "rfc6052/private"],
    ["2002:7f00:1::", "6to4/loopback"],
    ["2002:c0a8:101::1", "6to4/private"],
    ["2001:0:4136:e378:8000:63bf:80ff:fffe", "teredo/loopback"],
    ["2001:0:a9fe:a9fe:8000:63bf:f7f7:f7f7", "teredo/linkLocal"],
  ])("embedded IPv4 in %s is %s", (address, range) => {
    expect(rangeOf(address)).toBe(range);
  });

  test.each([
    "8.8.8.8",
    "1.1.1.1",
    "93.184.216.34",
    "172.32.0.1",
    "100.128.0.1",
    "2606:4700:4700::1111",
    "2a00:1450:4001::200e",
    "::ffff:8.8.8.8",
    "64:ff9b::8.8.8.8",
    "2002:808:808::1",
    "2001:0:4136:e378:8000:63bf:f7f7:f7f7",
  ])("public %s passes", (address) => {
    expect(rangeOf(address)).toBeNull();
  });
});

describe("parseIpAddress", () => {
  test("turns an IPv4-mapped address into IPv4", () => {
    expect(parseIpAddress("[::ffff:7f00:1]")?.toString()).toBe("127.0.0.1");
  });

  test.each(["127.1", "0x7f.0.0.1", "2130706433", "sms.example.com", ""])("leaves %j to the URL parser", (text) => {
    expect(parseIpAddress(text)).toBeNull();
  });
});

describe("blockedHostName", () => {
  test.each([
    ["localhost", "localhost"],
    ["LOCALHOST.", "localhost"],
    ["api.localhost", "localhost"],
    ["metadata", "metadata"],
    ["metadata.google.internal.", "metadata"],
    ["metadata.goog", "metadata"],
    ["instance-data", "metadata"],
    ["metadata.azure.com", "metadata"],
    ["db.internal", "private_domain"],
    ["printer.local", "private_domain"],
    ["nas.home.arpa", "private_domain"],
    ["host.localdomain", "private_domain"],
    ["gateway", "single_label"],
  ])("%s is blocked by rule %s", (name, rule) => {
    expect(blockedHostName(name)?.rule).toBe(rule);
  });

  test.each(["sms.example.com", "api.twilio.com", "internal.example.com", "local.example.com"])("%s is left to its addresses", (name) => {
    expect(blockedHostName(name)).toBeNull();
  });
});
