import { Code } from "@connectrpc/connect";
import type { buildConnector } from "undici";
import { afterAll, beforeAll, describe, expect, test } from "vitest";

import { BadRequestSchema, ErrorInfoSchema } from "../../gen/smsgateway/v1/errors_pb.js";
import type { Integration } from "../../src/domain/integration.js";
import type { SmsMessage } from "../../src/dispatch/dispatcher.js";
import { OutboundBlockedError } from "../../src/errors.js";
import { OutboundAllowList } from "../../src/outbound/allow-list.js";
import { OutboundGuard } from "../../src/outbound/outbound-guard.js";
import { toConnectError } from "../../src/rpc/error-mapping.js";
import { makeDispatcher, makeIntegration } from "../dispatch/fixtures.js";
import { SocketCounter } from "../helpers/socket-counter.js";
import { StubResolver } from "../helpers/stub-resolver.js";

/**
 * A guard whose connector records each connection attempt and refuses it,
 * so that no request of these tests can leave the machine, even one that a
 * broken check would let through.
 */
class RefusingGuard extends OutboundGuard {
  readonly attempts: string[] = [];

  override connector(): buildConnector.connector {
    return (target, callback) => {
      this.attempts.push(target.hostname);
      queueMicrotask(() => callback(new Error(`the test refused a connection to ${target.hostname}`), null));
    };
  }
}

/** A hostile URL and how the guard must reject it. */
interface HostileCase {
  url: string;
  code: Code;
  reason: string;
  /** The `range` (or for host names the `rule`) in the ErrorInfo metadata. */
  range?: string;
}

const SCHEME = { code: Code.InvalidArgument, reason: "OUTBOUND_SCHEME_BLOCKED" };
const USERINFO = { code: Code.InvalidArgument, reason: "OUTBOUND_USERINFO_BLOCKED" };
const INVALID = { code: Code.InvalidArgument, reason: "OUTBOUND_URL_INVALID" };
const host = (range: string) => ({ code: Code.PermissionDenied, reason: "OUTBOUND_HOST_BLOCKED", range });
const address = (range: string) => ({ code: Code.PermissionDenied, reason: "OUTBOUND_ADDRESS_BLOCKED", range });

const CASES: HostileCase[] = [
  { url: "ftp://gw.example.com/sms", ...SCHEME },
  { url: "file:///etc/passwd", ...SCHEME },
  { url: "gopher://127.0.0.1:25/_HELO", ...SCHEME },
  { url: "ws://gw.example.com/sms", ...SCHEME },
  { url: "https://user:pass@gw.example.com/sms", ...USERINFO },
  { url: "http://127.0.0.1:80@gw.example.com/sms", ...USERINFO },
  { url: "http://[fe80::1%25eth0]/", ...INVALID },
  { url: "http://4294967296/", ...INVALID },
  { url: "http://1.2.3.4.5/", ...INVALID },
  { url: "gw.example.com/sms", ...INVALID },

  { url: "http://localhost:8080/sms", ...host("localhost") },
  { url: "http://LOCALHOST./", ...host("localhost") },
  { url: "http://localhost../", ...host("localhost") },
  { url: "http://admin.localhost/", ...host("localhost") },
  { url: "http://\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54/", ...host("localhost") },
  { url: "http://%6c%6fcalhost/", ...host("localhost") },
  { url: "http://metadata.google.internal/computeMetadata/v1/", ...host("metadata") },
  { url: "http://METADATA.GOOGLE.INTERNAL./", ...host("metadata") },
  { url: "http://metadata/computeMetadata/v1/", ...host("metadata") },
  { url: "http://instance-data/latest/meta-data/", ...host("metadata") },
  { url: "http://metadata.azure.com/metadata/instance", ...host("metadata") },
  { url: "http://db.internal/", ...host("private_domain") },
  { url: "http://printer.local/", ...host("private_domain") },
  { url: "http://router.home.arpa/", ...host("private_domain") },
  { url: "http://gateway:9090/sms", ...host("single_label") },

  { url: "http://127.0.0.1/", ...address("loopback") },
  { url: "http://2130706433/", ...address("loopback") },
  { url: "http://0177.0.0.1/", ...address("loopback") },
  { url: "http://0x7f.1/", ...address("loopback") },
  { url: "http://0x7f000001/", ...address("loopback") },
  { url: "http://127.1/", ...address("loopback") },
  { url: "http://127%2E0%2E0%2E1/", ...address("loopback") },
  { url: "http://0/", ...address("unspecified") },
  { url: "http://0.0.0.0:8080/", ...address("unspecified") },
  { url: "http://169.254.169.254/latest/meta-data/", ...address("linkLocal") },
  { url: "http://169.254.169.254./", ...address("linkLocal") },
  { url: "http://10.0.0.1/", ...address("private") },
  { url: "https://172.16.5.4/", ...address("private") },
  { url: "http://192.168.1.1/", ...address("private") },
  { url: "http://100.64.0.1/", ...address("carrierGradeNat") },
  { url: "http://100.100.100.200/latest/meta-data/", ...address("carrierGradeNat") },
  { url: "http://192.0.0.192/", ...address("reserved") },
  { url: "http://192.0.2.1/", ...address("reserved") },
  { url: "http://198.51.100.7/", ...address("reserved") },
  { url: "http://203.0.113.9/", ...address("reserved") },
  { url: "http://198.18.0.1/", ...address("reserved") },
  { url: "http://192.88.99.1/", ...address("reserved") },
  { url: "http://224.0.0.1/", ...address("multicast") },
  { url: "http://240.0.0.1/", ...address("reserved") },
  { url: "http://255.255.255.255/", ...address("broadcast") },
  { url: "http://[::1]/", ...address("loopback") },
  { url: "http://[::]/", ...address("unspecified") },
  { url: "http://[::ffff:127.0.0.1]/", ...address("loopback") },
  { url: "http://[0:0:0:0:0:ffff:7f00:1]/", ...address("loopback") },
  { url: "http://[::ffff:a9fe:a9fe]/", ...address("linkLocal") },
  { url: "http://[::ffff:0:7f00:1]/", ...address("rfc6145/loopback") },
  { url: "http://[::127.0.0.1]/", ...address("ipv4Compatible/loopback") },
  { url: "http://[fe80::1]/", ...address("linkLocal") },
  { url: "http://[fd00:ec2::254]/latest/meta-data/", ...address("uniqueLocal") },
  { url: "http://[fec0::1]/", ...address("deprecatedSiteLocal") },
  { url: "http://[ff02::1]/", ...address("multicast") },
  { url: "http://[2001:db8::1]/", ...address("reserved") },
  { url: "http://[2001:2::1]/", ...address("benchmarking") },
  { url: "http://[2001:20::1]/", ...address("orchid2") },
  { url: "http://[100::1]/", ...address("discard") },
  { url: "http://[64:ff9b::a9fe:a9fe]/", ...address("rfc6052/linkLocal") },
  { url: "http://[64:ff9b:1::a00:1]/", ...address("nat64LocalUse") },
  { url: "http://[2002:7f00:1::]/", ...address("6to4/loopback") },
  { url: "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/", ...address("teredo/loopback") },
  { url: "http://[4000::1]/", ...address("notGlobalUnicast") },

  { url: "http://metadata-alias.example.com/latest/meta-data/", ...address("linkLocal") },
  { url: "http://127.0.0.1.nip.example.com/", ...address("loopback") },
  { url: "https://mixed.example.com/sms", ...address("private") },
  { url: "http://v6-loopback.example.com/", ...address("loopback") },
  { url: "http://mapped.example.com/", ...address("linkLocal") },
  { url: "http://zoned.example.com/", ...address("linkLocal") },
  { url: "https://nat64.example.com/", ...address("rfc6052/linkLocal") },
  { url: "http://cgnat.example.com/", ...address("carrierGradeNat") },
];

/** The public gateway that the URL under test is paired with, which the resolver maps to a public address. */
const PUBLIC_URL = "https://gw.example.com/sms";

const resolver = new StubResolver()
  .set("gw.example.com", "93.184.216.34")
  .set("metadata-alias.example.com", "169.254.169.254")
  .set("127.0.0.1.nip.example.com", "127.0.0.1")
  .set("mixed.example.com", "93.184.216.34", "10.1.2.3")
  .set("v6-loopback.example.com", "::1")
  .set("mapped.example.com", "::ffff:169.254.169.254")
  .set("zoned.example.com", "fe80::1%eth0")
  .set("nat64.example.com", "64:ff9b::169.254.169.254")
  .set("cgnat.example.com", "100.64.1.1");

const FIELDS: { field: string; integration: (url: string) => Integration }[] = [
  { field: "integration.base_url", integration: (url) => makeIntegration(url) },
  {
    field: "integration.auth_url",
    integration: (url) => makeIntegration(PUBLIC_URL, { authenticateByToken: true, authUrl: url, tokenKey: "token" }),
  },
];

const message: SmsMessage = { to: "+15551234567", content: "hi" };
const guard = new RefusingGuard({ allowList: OutboundAllowList.EMPTY, resolver });
const dispatcher = makeDispatcher({ outbound: guard });
const sockets = new SocketCounter();

beforeAll(() => {
  sockets.start();
});

afterAll(async () => {
  sockets.stop();
  await dispatcher.close();
});

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => new Error("expected the guard to reject the URL, but it passed"),
    (error: unknown) => error,
  );
}

function expectBlocked(error: unknown, expected: HostileCase, field: string): void {
  expect(error).toBeInstanceOf(OutboundBlockedError);
  const rpcError = toConnectError(error);
  expect(rpcError.code).toBe(expected.code);
  expect(rpcError.rawMessage.startsWith(`${field}: `)).toBe(true);

  const [info] = rpcError.findDetails(ErrorInfoSchema);
  expect(info?.reason).toBe(expected.reason);
  expect(info?.metadata.field).toBe(field);
  if (expected.range !== undefined) {
    expect(info?.metadata.range ?? info?.metadata.rule).toBe(expected.range);
  }
  const violations = rpcError.findDetails(BadRequestSchema).flatMap((detail) => detail.fieldViolations);
  expect(violations.map((violation) => violation.field)).toEqual(expected.code === Code.InvalidArgument ? [field] : []);
}

test("table has at least 40 hostile URLs", () => {
  expect(CASES.length).toBeGreaterThanOrEqual(40);
  expect(new Set(CASES.map((c) => c.url)).size).toBe(CASES.length);
});

describe.each(FIELDS)("$field", ({ field, integration }) => {
  test.each(CASES)("save rejects $url", async (hostile) => {
    const error = await rejection(guard.checkIntegration(integration(hostile.url)));

    expectBlocked(error, hostile, field);
  });

  test.each(CASES)("send rejects $url before any socket", async (hostile) => {
    const socketsBefore = sockets.count;

    const error = await rejection(dispatcher.send(integration(hostile.url), message));

    expectBlocked(error, hostile, field);
    expect(guard.attempts).toEqual([]);
    expect(sockets.count).toBe(socketsBefore);
  });
});

test("public URL passes the save check", async () => {
  await expect(guard.checkIntegration(makeIntegration(PUBLIC_URL))).resolves.toEqual([]);
});

test("remembered public address still passes", async () => {
  const url = "https://93.184.215.14/sms";

  const first = await guard.checkUrl("integration.base_url", url);
  const second = await guard.checkUrl("integration.base_url", url);

  expect(first).toEqual([{ address: "93.184.215.14", family: 4 }]);
  expect(second).toEqual(first);
});

test("blocked address fails every check", async () => {
  const url = "http://169.254.169.254/latest/meta-data/";

  for (let check = 0; check < 3; check++) {
    const error = await rejection(guard.checkUrl("integration.base_url", url));

    expect(error).toBeInstanceOf(OutboundBlockedError);
  }
});
