import { describe, expect, test } from "vitest";

import { parseRetryAfter } from "../../src/dispatch/retry-after.js";

describe("parseRetryAfter", () => {
  const now = Date.parse("2026-01-02T03:04:05Z");
  /** The documented cap, 2^31 - 1 seconds. */
  const cap = 2_147_483_647;
  const cases: Array<[string, string | string[] | undefined, number | undefined]> = [
    ["reads delay seconds", "30", 30],
    ["reads zero seconds", "0", 0],
    ["trims whitespace", " 7 ", 7],
    ["reads the first of repeated headers", ["5", "9"], 5],
    ["reads a future HTTP date", "Fri, 02 Jan 2026 03:05:05 GMT", 60],
    ["rounds a partial second up", "Fri, 02 Jan 2026 03:04:06 GMT", 1],
    ["gives 0 for a past HTTP date", "Thu, 01 Jan 2026 00:00:00 GMT", 0],
    ["ignores a missing header", undefined, undefined],
    ["ignores an empty header", "", undefined],
    ["ignores a negative delay", "-5", undefined],
    ["ignores a fractional delay", "1.5", undefined],
    ["ignores text", "soon", undefined],
    ["reads a delay at the cap", "2147483647", cap],
    ["caps a delay just past the cap", "2147483648", cap],
    ["caps a delay past safe integers", "99999999999999999999", cap],
    ["caps a delay too long for a double", "9".repeat(400), cap],
    ["reads leading zeros", "000000000000000000000000007", 7],
    ["caps an HTTP date in the year 9999", "Fri, 31 Dec 9999 23:59:59 GMT", cap],
  ];

  test.each(cases)("%s", (_name, header, expected) => {
    expect(parseRetryAfter(header, now)).toBe(expected);
  });
});
