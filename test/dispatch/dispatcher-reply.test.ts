import { once } from "node:events";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, afterEach, beforeEach, describe, expect, test } from "vitest";

import type { SendResult, SmsMessage } from "../../src/dispatch/dispatcher.js";
import { ScriptedGateway, type ScriptedReply } from "../helpers/scripted-gateway.js";
import { makeDispatcher, makeIntegration } from "./fixtures.js";

const MAX_RESPONSE_BYTES = 4096;
const dispatcher = makeDispatcher({ maxResponseBytes: MAX_RESPONSE_BYTES });
let gateway: ScriptedGateway;

beforeEach(async () => {
  gateway = await ScriptedGateway.start();
});
afterEach(() => gateway.close());
afterAll(() => dispatcher.close());

const message: SmsMessage = { to: "+15551234567", content: "hi" };

/** Sends one SMS to a gateway that replies as scripted, and records the send window. */
async function sendWith(reply: ScriptedReply, paths: { idPath?: string; datePath?: string } = {}) {
  gateway.on("/sms", reply);
  const before = Date.now();
  const result = await dispatcher.send(makeIntegration(gateway.url(), paths), message);
  return { result, before, after: Date.now() };
}

/** Checks that the result's date is the send time. */
function expectSendTime(result: SendResult, before: number, after: number): void {
  expect(result.dateSource).toBe("send_time");
  expect(result.date.getTime()).toBeGreaterThanOrEqual(before);
  expect(result.date.getTime()).toBeLessThanOrEqual(after);
}

describe("Dispatcher.send reply status", () => {
  test.each([200, 201, 202])("accepts HTTP %d with an id", async (status) => {
    const { result } = await sendWith({ status, json: { data: { id: "m1", date: "2026-01-02T03:04:05Z" } } });

    expect(result).toEqual({
      id: "m1",
      date: new Date("2026-01-02T03:04:05Z"),
      rawDate: "2026-01-02T03:04:05Z",
      dateSource: "gateway",
      httpStatus: status,
      attempts: 1,
      warnings: [],
    });
  });

  test("accepts HTTP 204 without a body", async () => {
    const { result, before, after } = await sendWith({ status: 204 });

    expect(result.id).toBe("");
    expect(result.httpStatus).toBe(204);
    expect(result.rawDate).toBe("");
    expect(result.warnings).toEqual(["reply body is empty, so there is no id at data.id"]);
    expectSendTime(result, before, after);
  });

  const unparsedCases: Array<[string, ScriptedReply, string]> = [
    ["HTML", { body: "<html>queued</html>", headers: { "content-type": "text/html" } }, "reply is not JSON"],
    ["plain text", { body: "OK" }, "reply is not JSON"],
    ["truncated JSON", { body: '{"data": {"id": "m1"' }, "reply is not JSON"],
    ["whitespace", { body: "  \n" }, "reply body is empty"],
  ];

  test.each(unparsedCases)("accepts a 2xx %s reply", async (_name, reply, warning) => {
    const { result, before, after } = await sendWith(reply);

    expect(result.id).toBe("");
    expect(result.httpStatus).toBe(200);
    expect(result.warnings).toEqual([`${warning}, so there is no id at data.id`]);
    expectSendTime(result, before, after);
  });

  const oversizeCases: Array<[string, ScriptedReply]> = [
    ["with Content-Length", { body: `{"data":{"id":"m1","pad":"${"x".repeat(MAX_RESPONSE_BYTES)}"}}` }],
    [
      "chunked",
      {
        body: `{"data":{"id":"m1","pad":"${"x".repeat(MAX_RESPONSE_BYTES)}"}}`,
        headers: { "transfer-encoding": "chunked" },
      },
    ],
  ];

  test.each(oversizeCases)("accepts an oversize reply %s", async (_name, reply) => {
    const { result } = await sendWith(reply);

    expect(result.id).toBe("");
    expect(result.httpStatus).toBe(200);
    expect(result.warnings).toEqual([
      `reply is larger than ${MAX_RESPONSE_BYTES} bytes and was not parsed, so there is no id at data.id`,
    ]);

    // The pool must still work after a body was cut off.
    gateway.on("/sms", { json: { data: { id: "m2" } } });
    const next = await dispatcher.send(makeIntegration(gateway.url()), message);
    expect(next.id).toBe("m2");
  });

  test("survives oversize replies sent in one write", async () => {
    // The whole reply arrives before the service drops the body, the case in
    // which undici emits an abort error on the dropped body.
    const body = "x".repeat(MAX_RESPONSE_BYTES + 1000);
    const server = createServer((request, response) => {
      request.resume();
      request.on("end", () => {
        response.writeHead(200, { "content-length": body.length });
        response.end(body);
      });
    });
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/sms`;

    try {
      for (let send = 0; send < 3; send++) {
        const result = await dispatcher.send(makeIntegration(url), message);

        expect(result.warnings).toEqual([
          `reply is larger than ${MAX_RESPONSE_BYTES} bytes and was not parsed, so there is no id at data.id`,
        ]);
      }
      // An unhandled error event would surface by now and fail the run.
      await new Promise((resolve) => setTimeout(resolve, 100));
    } finally {
      server.close();
    }
  });

  test("warns on a deeply nested numeric id", async () => {
    const deepDispatcher = makeDispatcher({ maxResponseBytes: 1024 * 1024 });
    const depth = 20_000;
    gateway.on("/sms", { body: `{"data":{"id":9007199254740993},"x":${"[".repeat(depth)}${"]".repeat(depth)}}` });

    try {
      const result = await deepDispatcher.send(makeIntegration(gateway.url()), message);

      expect(result.id).toBe("");
      expect(result.warnings).toEqual(["reply nests too deeply to read its numbers digit-exact, so there is no id at data.id"]);
    } finally {
      await deepDispatcher.close();
    }
  });

  test("keeps a string id beside a deep numeric date", async () => {
    const deepDispatcher = makeDispatcher({ maxResponseBytes: 1024 * 1024 });
    const depth = 20_000;
    gateway.on("/sms", { body: `{"data":{"id":"m-deep","date":1767225600},"x":${"[".repeat(depth)}${"]".repeat(depth)}}` });

    try {
      const result = await deepDispatcher.send(makeIntegration(gateway.url()), message);

      expect(result.id).toBe("m-deep");
      expect(result.dateSource).toBe("send_time");
      expect(result.warnings).toEqual([
        "reply nests too deeply to read its numbers digit-exact, so the date at data.date was not read and the date is the send time",
      ]);
    } finally {
      await deepDispatcher.close();
    }
  });

  test("reads a deeply nested string id", async () => {
    const deepDispatcher = makeDispatcher({ maxResponseBytes: 1024 * 1024 });
    const depth = 20_000;
    gateway.on("/sms", { body: `{"data":{"id":"m-deep"},"x":${"[".repeat(depth)}${"]".repeat(depth)}}` });

    try {
      const result = await deepDispatcher.send(makeIntegration(gateway.url()), message);

      expect(result.id).toBe("m-deep");
      expect(result.warnings).toEqual([]);
    } finally {
      await deepDispatcher.close();
    }
  });

  test("reads a reply of exactly the maximum size", async () => {
    const prefix = '{"data":{"id":"m1","pad":"';
    const body = prefix + "x".repeat(MAX_RESPONSE_BYTES - prefix.length - 3) + '"}}';
    expect(body).toHaveLength(MAX_RESPONSE_BYTES);
    const { result } = await sendWith({ body, headers: { "transfer-encoding": "chunked" } });

    expect(result.id).toBe("m1");
    expect(result.warnings).toEqual([]);
  });
});

describe("Dispatcher.send with a broken 2xx body", () => {
  const TIMEOUT_MS = 300;
  const shortDispatcher = makeDispatcher({ timeoutMs: TIMEOUT_MS });
  afterAll(() => shortDispatcher.close());

  const cases: Array<[string, ScriptedReply, RegExp]> = [
    ["hangs", { hangBody: true }, /^reply body did not arrive within the deadline, so there is no id at data\.id$/],
    ["resets", { resetBody: true }, /^reply body failed to arrive \(\w+\), so there is no id at data\.id$/],
  ];

  // The 2xx status already shows that the gateway accepted the SMS, so a retry would send it twice.
  test.each(cases)("accepts a send whose body %s", async (_name, reply, warning) => {
    gateway.on("/sms", { body: '{"data":{"id":"m1"', ...reply });
    const startedAt = performance.now();

    const result = await shortDispatcher.send(makeIntegration(gateway.url()), message);

    expect(result.id).toBe("");
    expect(result.httpStatus).toBe(200);
    expect(result.dateSource).toBe("send_time");
    expect(result.warnings).toHaveLength(1);
    expect(result.warnings[0]).toMatch(warning);
    expect(performance.now() - startedAt).toBeLessThan(TIMEOUT_MS + 1_000);
  });
});

describe("Dispatcher.send id path", () => {
  const cases: Array<[string, string, string, string | undefined]> = [
    ["data.id", '{"data": {"id": "m1"}}', "m1", undefined],
    ["message.id", '{"message": {"id": "msg_123", "date": "2026-01-02T03:04:05Z"}}', "msg_123", undefined],
    ["messages.0.id", '{"messages": [{"id": "a1"}, {"id": "a2"}]}', "a1", undefined],
    ["messages.1.id", '{"messages": [{"id": "a1"}, {"id": "a2"}]}', "a2", undefined],
    ["result.message-id", '{"result": {"message-id": "h-1"}}', "h-1", undefined],
    ["data.id", '{"data": {"id": 12345678901234567890123}}', "12345678901234567890123", undefined],
    ["data.id", '{"data": {"id": 42}}', "42", undefined],
    ["data.id", '{"data": {"id": 1.5e3}}', "1.5e3", undefined],
    ["data.id", '{"data": {}}', "", "no id at data.id"],
    ["data.id", '{"status": "queued"}', "", "no id at data.id"],
    ["messages.2.id", '{"messages": [{"id": "a1"}]}', "", "no id at messages.2.id"],
    ["data.id", '{"data": {"id": null}}', "", "no id at data.id because the value is null"],
    ["data.id", '{"data": {"id": ""}}', "", "the id at data.id is an empty string"],
    ["data.id", "[1, 2]", "", "no id at data.id"],
    [
      "data.id",
      '{"data": {"id": true}}',
      "",
      "found true at data.id instead of a string or number id. Set id_path to the field that holds the message id.",
    ],
    [
      "data.message",
      '{"data": {"message": {"id": "m1", "status": "queued"}}}',
      "",
      'found an object with the keys "id", "status" at data.message instead of a string or number id. ' +
        "Set id_path to the field that holds the message id, for example data.message.id.",
    ],
    [
      "data.id",
      '{"data": {"id": {"value": "m1"}}}',
      "",
      'found an object with the keys "value" at data.id instead of a string or number id. ' +
        "Set id_path to the field that holds the message id.",
    ],
    [
      "data.messages",
      '{"data": {"messages": [{"id": "m1"}, {"id": "m2"}]}}',
      "",
      "found an array of 2 items at data.messages instead of a string or number id. " +
        "Set id_path to the field that holds the message id, for example data.messages.0.id.",
    ],
    [
      "data.id",
      '{"data": [{"id": 1}]}',
      "",
      "no id at data.id. Set id_path to the field that holds the message id, for example data.0.id.",
    ],
    [
      "data.messages.id",
      '{"data": {"messages": [{"id": "m1"}]}}',
      "",
      "no id at data.messages.id. Set id_path to the field that holds the message id, for example data.messages.0.id.",
    ],
    ["data.id", '{"data": [{"ref": "m1"}]}', "", "no id at data.id"],
    ["data.id", '[{"id": "a0"}]', "", "no id at data.id. Set id_path to the field that holds the message id, for example 0.id."],
    ["id", '{"data": {"id": "m1"}}', "", "no id at id. Set id_path to the field that holds the message id, for example data.id."],
    [
      "data.id",
      '{"result": {"messages": [{"id": 7}]}}',
      "",
      "no id at data.id. Set id_path to the field that holds the message id, for example result.messages.0.id.",
    ],
    ["message_id", '{"a": {"b": {"c": {"d": {"e": {"message_id": "deep"}}}}}}', "", "no id at message_id"],
    ["id", '{"a.b": {"id": "m1"}}', "", "no id at id"],
    ["id", '{"data": {"": {"id": "m1"}}}', "", "no id at id"],
  ];

  test.each(cases)("reads %s from %s", async (idPath, body, id, warning) => {
    const { result } = await sendWith({ body, headers: { "content-type": "application/json" } }, { idPath });

    expect(result.id).toBe(id);
    expect(result.id).not.toContain("[object");
    expect(result.warnings).toEqual(warning === undefined ? [] : [warning]);
  });
});

describe("Dispatcher.send date path", () => {
  const parsed: Array<[string, string, string, string]> = [
    ["data.date", '"2026-01-02T03:04:05Z"', "2026-01-02T03:04:05.000Z", "2026-01-02T03:04:05Z"],
    ["data.date", '"2026-01-02T05:04:05.250+02:00"', "2026-01-02T03:04:05.250Z", "2026-01-02T05:04:05.250+02:00"],
    ["data.date", '"Fri, 02 Jan 2026 03:04:05 +0000"', "2026-01-02T03:04:05.000Z", "Fri, 02 Jan 2026 03:04:05 +0000"],
    ["data.date", "1767323045", "2026-01-02T03:04:05.000Z", "1767323045"],
    ["data.date", "1767323045123", "2026-01-02T03:04:05.123Z", "1767323045123"],
    ["data.date", '"1767323045"', "2026-01-02T03:04:05.000Z", "1767323045"],
    ["data.events.0.at", '"2026-01-02T03:04:05Z"', "2026-01-02T03:04:05.000Z", "2026-01-02T03:04:05Z"],
  ];

  test.each(parsed)("reads %s = %s", async (datePath, dateJson, iso, rawDate) => {
    const body =
      datePath === "data.events.0.at"
        ? `{"data": {"id": "m1", "events": [{"at": ${dateJson}}]}}`
        : `{"data": {"id": "m1", "date": ${dateJson}}}`;
    const { result } = await sendWith({ body }, { datePath });

    expect(result.date.toISOString()).toBe(iso);
    expect(result.rawDate).toBe(rawDate);
    expect(result.dateSource).toBe("gateway");
    expect(result.warnings).toEqual([]);
  });

  const fallback: Array<[string, string, string, string | undefined]> = [
    ["missing", '{"data": {"id": "m1"}}', "", undefined],
    ["null", '{"data": {"id": "m1", "date": null}}', "", undefined],
    [
      "unparseable",
      '{"data": {"id": "m1", "date": "next tuesday"}}',
      "next tuesday",
      'could not parse the date "next tuesday" at data.date, so the date is the send time. ' +
        "Expected ISO 8601, RFC 2822, or epoch seconds or milliseconds.",
    ],
    [
      "year 0",
      '{"data": {"id": "m1", "date": "0000-06-15"}}',
      "0000-06-15",
      'the date "0000-06-15" at data.date is outside the years 1 to 9999 that the response can carry, ' +
        "so the date is the send time",
    ],
    [
      "leap second into year 10000",
      '{"data": {"id": "m1", "date": "9999-12-31T23:59:60Z"}}',
      "9999-12-31T23:59:60Z",
      'the date "9999-12-31T23:59:60Z" at data.date is outside the years 1 to 9999 that the response can carry, ' +
        "so the date is the send time",
    ],
    [
      "year 0 offset",
      '{"data": {"id": "m1", "date": "Mon, 01 Jan 0001 00:30:00 +0100"}}',
      "Mon, 01 Jan 0001 00:30:00 +0100",
      'the date "Mon, 01 Jan 0001 00:30:00 +0100" at data.date is outside the years 1 to 9999 that the response ' +
        "can carry, so the date is the send time",
    ],
    [
      "an object",
      '{"data": {"id": "m1", "date": {"seconds": 1}}}',
      "",
      'found an object with the keys "seconds" at data.date instead of a date, so the date is the send time',
    ],
  ];

  test.each(fallback)("uses the send time for a %s date", async (_name, body, rawDate, warning) => {
    const { result, before, after } = await sendWith({ body });

    expect(result.id).toBe("m1");
    expect(result.rawDate).toBe(rawDate);
    expect(result.warnings).toEqual(warning === undefined ? [] : [warning]);
    expectSendTime(result, before, after);
  });
});

describe("Dispatcher.send redaction of the reply", () => {
  test("redacts a key changed on the same integration object", async () => {
    const integration = makeIntegration(gateway.url());
    gateway.on("/sms", { json: { data: { id: `echo-${integration.apiKey}` } } });
    const first = await dispatcher.send(integration, message);

    integration.apiKey = "rotated-key-5d1e";
    gateway.on("/sms", { json: { data: { id: "echo-rotated-key-5d1e" } } });
    const second = await dispatcher.send(integration, message);

    expect(first.id).toBe("echo-[REDACTED]");
    expect(second.id).toBe("echo-[REDACTED]");
  });

  test("keeps an id that contains a short key's characters", async () => {
    const integration = makeIntegration(gateway.url(), { apiKey: "2", secretKey: "bd", secretKeyHeader: "X-Secret" });
    gateway.on("/sms", { json: { data: { id: "msg_25_8bc32bdb", date: "2026-02-02T02:22:00Z" } } });

    const result = await dispatcher.send(integration, message);

    expect(result.id).toBe("msg_25_8bc32bdb");
    expect(result.rawDate).toBe("2026-02-02T02:22:00Z");
  });

  test("redacts an id that is a short key", async () => {
    const integration = makeIntegration(gateway.url(), { apiKey: "k42" });
    gateway.on("/sms", { json: { data: { id: "k42" } } });

    const result = await dispatcher.send(integration, message);

    expect(result.id).toBe("[REDACTED]");
  });
});

describe("Dispatcher.send reply lengths", () => {
  test("keeps an id and date at their limits", async () => {
    const id = "i".repeat(256);
    const date = `2026-01-02T03:04:05 ${"x".repeat(44)}`;
    const { result } = await sendWith({ json: { data: { id, date } } });

    expect(result.id).toBe(id);
    expect(result.rawDate).toBe(date);
    expect(result.warnings.filter((warning) => warning.includes("left out"))).toEqual([]);
  });

  test("leaves out a longer id and date", async () => {
    const { result, before, after } = await sendWith({ json: { data: { id: "i".repeat(257), date: "d".repeat(65) } } });

    expect(result.id).toBe("");
    expect(result.rawDate).toBe("");
    expect(result.warnings).toContain("the id at data.id has 257 characters, more than the 256 that a result carries, so it was left out");
    expect(result.warnings).toContain("the date at data.date has 65 characters, more than the 64 that a result carries, so it was left out");
    expectSendTime(result, before, after);
  });

  test("leaves out a 300-digit number id", async () => {
    const { result } = await sendWith({ body: `{"data":{"id":${"9".repeat(300)}}}`, headers: { "content-type": "application/json" } });

    expect(result.id).toBe("");
    expect(result.warnings[0]).toMatch(/^the id at data.id has 300 characters/);
  });
});

test("counts an id's length in code points", async () => {
  const id = "\u{1F600}".repeat(200);
  const { result } = await sendWith({ json: { data: { id } } });

  expect(result.id).toBe(id);
});
