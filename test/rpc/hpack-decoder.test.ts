import http2 from "node:http2";
import net from "node:net";
import type { AddressInfo } from "node:net";
import { describe, expect, test } from "vitest";
import { decodeHuffman, HpackDecoder, HpackError } from "../../src/server/hpack-decoder.js";
import { EMPTY_SETTINGS_FRAME, HTTP2_PREFACE } from "../../src/server/http2-first-request.js";

const hex = (text: string) => Buffer.from(text.replace(/\s+/g, ""), "hex");

describe("RFC 7541 appendix C examples", () => {
  // C.3 (raw strings) and C.4 (Huffman strings): three requests on one connection.
  const expected = [
    [[":method", "GET"], [":scheme", "http"], [":path", "/"], [":authority", "www.example.com"]],
    [[":method", "GET"], [":scheme", "http"], [":path", "/"], [":authority", "www.example.com"], ["cache-control", "no-cache"]],
    [[":method", "GET"], [":scheme", "https"], [":path", "/index.html"], [":authority", "www.example.com"], ["custom-key", "custom-value"]],
  ];

  test.each([
    {
      name: "raw strings",
      blocks: [
        "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
        "8286 84be 5808 6e6f 2d63 6163 6865",
        "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
      ],
    },
    {
      name: "Huffman strings",
      blocks: [
        "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
        "8286 84be 5886 a8eb 1064 9cbf",
        "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
      ],
    },
  ])("$name", ({ blocks }) => {
    const decoder = new HpackDecoder();
    blocks.forEach((block, index) => {
      expect(decoder.decode(hex(block))).toEqual(expected[index]);
    });
  });
});

describe("malformed blocks", () => {
  test.each([
    { name: "index 0", block: "80" },
    { name: "index beyond the tables", block: "be" },
    { name: "string past the end", block: "4005 6162" },
    { name: "integer past the end", block: "ff" },
    { name: "integer too large", block: "ffffffffff0f" },
    { name: "table size above the setting", block: "3fe21f" },
    { name: "table size update after a field", block: "8220" },
    { name: "Huffman padding of zeros", block: "04 81 00" },
    { name: "Huffman padding of 8 bits", block: "04 82 1fff" },
  ])("$name", ({ block }) => {
    expect(() => new HpackDecoder().decode(hex(block))).toThrow(HpackError);
  });

  test("Huffman end-of-string symbol", () => {
    expect(() => decodeHuffman(hex("ffffffff"))).toThrow(HpackError);
  });
});

test("dynamic table evicts oldest entries", () => {
  // A table of 64 octets fits one entry of 1 + 20 octets plus the 32-octet overhead.
  const decoder = new HpackDecoder();
  const literal = (name: string, value: string) =>
    Buffer.concat([Buffer.from([0x40, name.length]), Buffer.from(name), Buffer.from([value.length]), Buffer.from(value)]);
  const block = Buffer.concat([Buffer.from([0x3f, 0x21]), literal("a", "1".repeat(20)), literal("b", "2".repeat(20))]);

  expect(decoder.decode(block)).toEqual([["a", "1".repeat(20)], ["b", "2".repeat(20)]]);
  expect(decoder.decode(Buffer.from([0xbe]))).toEqual([["b", "2".repeat(20)]]);
  expect(() => decoder.decode(Buffer.from([0xbf]))).toThrow(HpackError);
});

/** Splits HTTP/2 frames after the client preface. */
function* frames(bytes: Buffer): Generator<{ type: number; flags: number; payload: Buffer }> {
  let offset = HTTP2_PREFACE.length;
  while (offset + 9 <= bytes.length) {
    const length = bytes.readUIntBE(offset, 3);
    if (offset + 9 + length > bytes.length) {
      return;
    }
    yield { type: bytes[offset + 3]!, flags: bytes[offset + 4]!, payload: bytes.subarray(offset + 9, offset + 9 + length) };
    offset += 9 + length;
  }
}

test("Node's HTTP/2 client header blocks decode", async () => {
  // Node's encoder (nghttp2) indexes headers in the dynamic table and Huffman-codes strings, so
  // repeated and large headers across requests exercise indexing and eviction.
  const received: Buffer[] = [];
  const server = net.createServer((socket) => {
    socket.write(EMPTY_SETTINGS_FRAME);
    socket.on("data", (chunk: Buffer) => received.push(chunk));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const session = http2.connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);

  const sent: Record<string, string>[] = [];
  for (let i = 0; i < 6; i++) {
    const headers = {
      ":method": "POST",
      ":path": `/smsgateway.v1.SmsService/SendSms?n=${i}`,
      "content-type": "application/grpc",
      "x-large": `${"v".repeat(900)}${i}`,
      "x-repeated": "same value every time",
      "x-bytes": "caf\u00e9 \u00ff~",
    };
    sent.push(headers);
    session.request(headers, { endStream: true }).on("error", () => undefined);
  }

  try {
    const blocks = await waitFor(() => {
      const all = [...frames(Buffer.concat(received))].filter((frame) => frame.type === 0x1);
      return all.length === sent.length ? all : undefined;
    });
    const decoder = new HpackDecoder();
    blocks.forEach((frame, index) => {
      expect(frame.flags & 0x4).toBe(0x4);
      const fields = Object.fromEntries(decoder.decode(frame.payload));
      for (const [name, value] of Object.entries(sent[index]!)) {
        expect(fields[name]).toBe(value);
      }
    });
  } finally {
    session.destroy();
    server.close();
  }
});

async function waitFor<T>(probe: () => T | undefined): Promise<T> {
  const until = Date.now() + 10_000;
  for (;;) {
    const value = probe();
    if (value !== undefined) {
      return value;
    }
    if (Date.now() > until) {
      throw new Error("timed out waiting for the client's frames");
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
