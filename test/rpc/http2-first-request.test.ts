import v8 from "node:v8";
import vm from "node:vm";

import { describe, expect, test, vi } from "vitest";
import { FirstRequestParser, HTTP2_PREFACE } from "../../src/server/http2-first-request.js";

function frame(type: number, flags: number, streamId: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const header = Buffer.alloc(9);
  header.writeUIntBE(payload.length, 0, 3);
  header[3] = type;
  header[4] = flags;
  header.writeUInt32BE(streamId, 5);
  return Buffer.concat([header, payload]);
}

/** A header block of raw literals: `:path` (static index 4) and `content-type` (static index 31). */
function requestBlock(path: string, contentType: string): Buffer {
  return Buffer.concat([
    Buffer.from([0x83]), // :method POST
    Buffer.from([0x04, path.length]),
    Buffer.from(path, "latin1"),
    Buffer.from([0x0f, 0x10, contentType.length]),
    Buffer.from(contentType, "latin1"),
  ]);
}

const CLIENT_SETTINGS = frame(0x4, 0, 0, Buffer.from([0, 3, 0, 0, 0, 100]));
const SETTINGS_ACK = frame(0x4, 0x1, 0);
const WINDOW_UPDATE = frame(0x8, 0, 0, Buffer.from([0, 0x0f, 0, 1]));
const PATH = "/smsgateway.v1.SmsService/SendSms";
const HEADERS = frame(0x1, 0x4, 1, requestBlock(PATH, "application/grpc"));
const DATA = frame(0x0, 0x1, 1, Buffer.from([0, 0, 0, 0, 2, 0x0a, 0]));

const EXPECTED_REQUEST = { path: PATH, contentType: "application/grpc" };

describe("request and acknowledgement", () => {
  test("acknowledgement after the request is removed", () => {
    const parser = new FirstRequestParser();
    const before = Buffer.concat([HTTP2_PREFACE, CLIENT_SETTINGS, WINDOW_UPDATE, HEADERS, DATA]);

    expect(parser.push(before)).toBeUndefined();
    const outcome = parser.push(SETTINGS_ACK);

    expect(outcome?.request).toEqual(EXPECTED_REQUEST);
    expect(outcome?.bytes.equals(before)).toBe(true);
  });

  test("acknowledgement before the request is removed", () => {
    const parser = new FirstRequestParser();
    const outcome = parser.push(Buffer.concat([HTTP2_PREFACE, CLIENT_SETTINGS, SETTINGS_ACK, HEADERS]));

    expect(outcome?.request).toEqual(EXPECTED_REQUEST);
    expect(outcome?.bytes.equals(Buffer.concat([HTTP2_PREFACE, CLIENT_SETTINGS, HEADERS]))).toBe(true);
  });

  test("only the first acknowledgement is removed", () => {
    const parser = new FirstRequestParser();
    const outcome = parser.push(Buffer.concat([HTTP2_PREFACE, CLIENT_SETTINGS, SETTINGS_ACK, SETTINGS_ACK, HEADERS]));

    expect(outcome?.bytes.equals(Buffer.concat([HTTP2_PREFACE, CLIENT_SETTINGS, SETTINGS_ACK, HEADERS]))).toBe(true);
  });

  test("one byte at a time", () => {
    const parser = new FirstRequestParser();
    const all = Buffer.concat([HTTP2_PREFACE, CLIENT_SETTINGS, HEADERS, SETTINGS_ACK]);
    const outcomes = [...all].map((byte) => parser.push(Buffer.from([byte])));

    expect(outcomes.slice(0, -1).every((outcome) => outcome === undefined)).toBe(true);
    expect(outcomes.at(-1)?.request).toEqual(EXPECTED_REQUEST);
    expect(outcomes.at(-1)?.bytes.equals(Buffer.concat([HTTP2_PREFACE, CLIENT_SETTINGS, HEADERS]))).toBe(true);
  });

  test("request without acknowledgement waits", () => {
    const parser = new FirstRequestParser();

    expect(parser.push(Buffer.concat([HTTP2_PREFACE, CLIENT_SETTINGS, HEADERS]))).toBeUndefined();
    expect(parser.acknowledged).toBe(false);
  });

  test("acknowledgement without request waits", () => {
    const parser = new FirstRequestParser();

    expect(parser.push(Buffer.concat([HTTP2_PREFACE, CLIENT_SETTINGS, SETTINGS_ACK]))).toBeUndefined();
    expect(parser.acknowledged).toBe(true);
  });
});

describe("header block forms", () => {
  test("padding, priority and CONTINUATION", () => {
    const block = requestBlock(PATH, "application/grpc+proto");
    const padded = Buffer.concat([Buffer.from([3]), Buffer.from([0, 0, 0, 0, 16]), block.subarray(0, 10), Buffer.alloc(3)]);
    const parser = new FirstRequestParser();
    const outcome = parser.push(
      Buffer.concat([
        HTTP2_PREFACE,
        CLIENT_SETTINGS,
        frame(0x1, 0x8 | 0x20, 1, padded),
        frame(0x9, 0, 1, block.subarray(10, 20)),
        frame(0x9, 0x4, 1, block.subarray(20)),
        SETTINGS_ACK,
      ]),
    );

    expect(outcome?.request).toEqual({ path: PATH, contentType: "application/grpc+proto" });
  });

  test("extension frames are skipped", () => {
    const parser = new FirstRequestParser();
    const outcome = parser.push(Buffer.concat([HTTP2_PREFACE, CLIENT_SETTINGS, frame(0xa, 0, 0, Buffer.from("x")), HEADERS, SETTINGS_ACK]));

    expect(outcome?.request).toEqual(EXPECTED_REQUEST);
  });

  test("request without content-type", () => {
    const block = Buffer.concat([Buffer.from([0x83, 0x04, 4]), Buffer.from("/x/y")]);
    const parser = new FirstRequestParser();
    const outcome = parser.push(Buffer.concat([HTTP2_PREFACE, CLIENT_SETTINGS, frame(0x1, 0x4, 1, block), SETTINGS_ACK]));

    expect(outcome?.request).toEqual({ path: "/x/y", contentType: "" });
  });
});

describe("unreadable requests", () => {
  test.each([
    { name: "PING before the request", frames: [frame(0x6, 0, 0, Buffer.alloc(8)), HEADERS] },
    { name: "DATA before the request", frames: [DATA, HEADERS] },
    { name: "malformed header block", frames: [frame(0x1, 0x4, 1, Buffer.from([0x80]))] },
    { name: "no :path", frames: [frame(0x1, 0x4, 1, Buffer.from([0x83]))] },
  ])("$name", ({ frames }) => {
    const parser = new FirstRequestParser();
    const outcome = parser.push(Buffer.concat([HTTP2_PREFACE, CLIENT_SETTINGS, ...frames, SETTINGS_ACK]));

    expect(outcome).toBeDefined();
    expect(outcome?.request).toBeUndefined();
    expect(outcome?.bytes.equals(Buffer.concat([HTTP2_PREFACE, CLIENT_SETTINGS, ...frames]))).toBe(true);
  });

  test.each([
    { name: "CONTINUATION on another stream", frames: [frame(0x1, 0, 1, Buffer.from([0x83])), frame(0x9, 0x4, 3, Buffer.from([0x84]))] },
    { name: "HEADERS on stream 0", frames: [frame(0x1, 0x4, 0, Buffer.from([0x83]))] },
    { name: "padding longer than the frame", frames: [frame(0x1, 0x4 | 0x8, 1, Buffer.from([9, 0x83]))] },
    { name: "frame above the default maximum size", frames: [frame(0x0, 0, 1, Buffer.alloc(16_385))] },
    { name: "acknowledgement with a payload", frames: [frame(0x4, 0x1, 0, Buffer.alloc(6))] },
  ])("$name ends waiting at once", ({ frames }) => {
    const parser = new FirstRequestParser();
    const bytes = Buffer.concat([HTTP2_PREFACE, CLIENT_SETTINGS, ...frames]);
    const outcome = parser.push(bytes);

    expect(outcome?.request).toBeUndefined();
    expect(outcome?.bytes.equals(bytes)).toBe(true);
  });

  test("not the HTTP/2 preface", () => {
    const parser = new FirstRequestParser();
    const bytes = Buffer.from("POST / HTTP/1.1\r\n\r\n");

    expect(parser.push(bytes)?.bytes.equals(bytes)).toBe(true);
  });

  test("too many bytes before the request", () => {
    const parser = new FirstRequestParser({ maxBufferedBytes: 64 });
    const window = Buffer.concat([HTTP2_PREFACE, CLIENT_SETTINGS, WINDOW_UPDATE, WINDOW_UPDATE, WINDOW_UPDATE, WINDOW_UPDATE]);

    expect(parser.push(window)).toBeUndefined();
    const outcome = parser.push(SETTINGS_ACK);

    expect(outcome).toBeDefined();
    expect(outcome?.request).toBeUndefined();
    expect(outcome?.bytes.equals(window)).toBe(true);
  });
});

describe("chunking", () => {
  /** Returns a first request after 2,000 WINDOW_UPDATE frames, in a padded HEADERS frame and two CONTINUATION frames. */
  function largeRequest(): Buffer {
    const block = requestBlock(PATH, "application/grpc");
    const filler = Array.from({ length: 2_000 }, () => WINDOW_UPDATE);
    return Buffer.concat([
      HTTP2_PREFACE,
      CLIENT_SETTINGS,
      ...filler,
      frame(0x1, 0x8, 1, Buffer.concat([Buffer.from([200]), block.subarray(0, 10), Buffer.alloc(200)])),
      frame(0x9, 0, 1, block.subarray(10, 20)),
      frame(0x9, 0x4, 1, block.subarray(20)),
      SETTINGS_ACK,
    ]);
  }

  test.each([1, 2, 7, 9, 100, 4096])("chunks of %d bytes give the same outcome", (size) => {
    const bytes = largeRequest();
    const parser = new FirstRequestParser();
    let outcome;
    for (let start = 0; start < bytes.length && outcome === undefined; start += size) {
      outcome = parser.push(bytes.subarray(start, start + size));
    }

    expect(outcome?.request).toEqual(EXPECTED_REQUEST);
    expect(outcome?.bytes.equals(bytes.subarray(0, bytes.length - SETTINGS_ACK.length))).toBe(true);
  });

  test("single bytes cause bounded copying", () => {
    const bytes = largeRequest();
    const allocate = vi.spyOn(Buffer, "allocUnsafe");
    try {
      const parser = new FirstRequestParser();
      for (const byte of bytes) {
        parser.push(Buffer.from([byte]));
      }
      const allocated = allocate.mock.calls.reduce((sum, [size]) => sum + size, 0);

      // A buffer that doubles allocates less than twice its final size in all, and the outcome
      // without the acknowledgement takes one more copy.
      expect(allocated).toBeLessThanOrEqual(bytes.length * 4);
    } finally {
      allocate.mockRestore();
    }
  });
});

describe("memory while waiting", () => {
  test("single-byte chunks retain little memory", () => {
    v8.setFlagsFromString("--expose-gc");
    const gc = vm.runInNewContext("gc") as () => void;
    // A header block that never ends: HEADERS without END_HEADERS, then CONTINUATION frames.
    const start = Buffer.concat([HTTP2_PREFACE, CLIENT_SETTINGS, SETTINGS_ACK, frame(0x1, 0, 1, Buffer.from([0x83]))]);
    const rest = Buffer.concat(Array.from({ length: 15 }, () => frame(0x9, 0, 1, Buffer.alloc(16_000, 0x82))));
    const parser = new FirstRequestParser();
    parser.push(start);
    gc();
    const before = process.memoryUsage();

    // 200,000 bytes stay under the 256 KiB limit, so the parser keeps waiting.
    for (let i = 0; i < 200_000; i++) {
      expect(parser.push(Buffer.from(rest.subarray(i, i + 1)))).toBeUndefined();
    }
    gc();
    const after = process.memoryUsage();
    const retained = after.heapUsed - before.heapUsed + (after.arrayBuffers - before.arrayBuffers);

    // The bytes take 0.2 MB, so a few times that is fine, but about 100 bytes per chunk is not.
    expect(retained).toBeLessThan(4 * 1024 * 1024);
    expect(parser.acknowledged).toBe(true);
  });
});
