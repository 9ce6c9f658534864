import { describe, expect, test } from "vitest";

import { createIdGenerator, newIntegrationId } from "../../src/store/integration-id.js";

const CROCKFORD_BASE32 = "0123456789abcdefghjkmnpqrstvwxyz";

/** Decodes the millisecond time in the first 10 characters after `int_`. */
function decodeTime(id: string): number {
  let time = 0;
  for (const character of id.slice(4, 14)) {
    time = time * 32 + CROCKFORD_BASE32.indexOf(character);
  }
  return time;
}

describe("integration ids", () => {
  test("have the int_ prefix and 26 base32 characters", () => {
    expect(newIntegrationId()).toMatch(/^int_[0-9a-hjkmnp-tv-z]{26}$/);
  });

  test("encode the creation time in milliseconds", () => {
    const generate = createIdGenerator(() => Date.UTC(2026, 11, 4, 20, 4, 55, 123));

    expect(decodeTime(generate())).toBe(Date.UTC(2026, 11, 4, 20, 4, 55, 123));
  });

  test("sort by time across milliseconds", () => {
    let now = 1_000;
    const generate = createIdGenerator(() => now);

    const earlier = generate();
    now = 1_001;
    const later = generate();

    expect(earlier < later).toBe(true);
  });

  test("sort in creation order within one millisecond", () => {
    const generate = createIdGenerator(() => 1_700_000_000_000);

    const ids = Array.from({ length: 1_000 }, generate);

    expect([...ids].sort()).toEqual(ids);
    expect(new Set(ids).size).toBe(ids.length);
  });

  test("keep increasing when the clock steps back", () => {
    let now = 2_000;
    const generate = createIdGenerator(() => now);

    const first = generate();
    now = 1_000;
    const second = generate();

    expect(first < second).toBe(true);
    expect(decodeTime(second)).toBe(2_000);
  });

  test("differ between generators in one millisecond", () => {
    const first = createIdGenerator(() => 5_000)();
    const second = createIdGenerator(() => 5_000)();

    expect(first).not.toBe(second);
    expect(first.slice(0, 14)).toBe(second.slice(0, 14));
  });
});
