import { describe, expect, test } from "vitest";

import { TokenBucket } from "../../src/flow/token-bucket.js";

describe("TokenBucket", () => {
  test("allows a burst of one second's worth", () => {
    const bucket = new TokenBucket(3, 0);

    expect([bucket.tryTake(0), bucket.tryTake(0), bucket.tryTake(0)]).toEqual([0, 0, 0]);
    expect(bucket.tryTake(0)).toBe(334);
  });

  test("refills at the rate", () => {
    const bucket = new TokenBucket(4, 0);
    for (let i = 0; i < 4; i++) {
      bucket.tryTake(0);
    }

    expect(bucket.tryTake(100)).toBe(150);
    expect(bucket.tryTake(250)).toBe(0);
    expect(bucket.tryTake(250)).toBe(250);
  });

  test("holds at least one token below one per second", () => {
    const bucket = new TokenBucket(0.5, 0);

    expect(bucket.tryTake(0)).toBe(0);
    expect(bucket.tryTake(0)).toBe(2000);
    expect(bucket.tryTake(1500)).toBe(500);
    expect(bucket.tryTake(2000)).toBe(0);
  });

  test("takes a token given back", () => {
    const bucket = new TokenBucket(2, 0);
    bucket.tryTake(0);
    bucket.tryTake(0);
    bucket.giveBack(0);

    expect(bucket.tryTake(0)).toBe(0);
    expect(bucket.tryTake(0)).toBe(500);
  });

  test("holds no more than its capacity after a token is given back", () => {
    const bucket = new TokenBucket(2, 0);
    bucket.tryTake(0);
    bucket.giveBack(600);

    expect(bucket.isFull(600)).toBe(true);
    expect([bucket.tryTake(600), bucket.tryTake(600)]).toEqual([0, 0]);
    expect(bucket.tryTake(600)).toBe(500);
  });

  test("leaves the tokens to keep", () => {
    const bucket = new TokenBucket(4, 0);
    bucket.tryTake(0);
    bucket.tryTake(0);

    expect(bucket.tryTake(0, 1)).toBe(0);
    expect(bucket.tryTake(0, 1)).toBe(250);
    expect(bucket.tryTake(0)).toBe(0);
  });

  test("cannot leave more tokens than it holds", () => {
    const bucket = new TokenBucket(1, 0);

    expect(bucket.tryTake(0, 1)).toBe(Number.POSITIVE_INFINITY);
    expect(bucket.tryTake(0)).toBe(0);
  });

  test("never holds more than its capacity", () => {
    const bucket = new TokenBucket(2, 0);

    bucket.tryTake(60_000);
    bucket.tryTake(60_000);

    expect(bucket.tryTake(60_000)).toBe(500);
  });

  test("lowering the rate grants no new burst", () => {
    const bucket = new TokenBucket(10, 0);
    for (let i = 0; i < 9; i++) {
      bucket.tryTake(0);
    }

    bucket.setRate(1);

    expect(bucket.ratePerSecond).toBe(1);
    expect(bucket.tryTake(0)).toBe(0);
    expect(bucket.tryTake(0)).toBe(1000);
  });

  test("raising the rate refills faster", () => {
    const bucket = new TokenBucket(1, 0);
    bucket.tryTake(0);

    bucket.setRate(100);

    expect(bucket.tryTake(0)).toBe(10);
    expect(bucket.tryTake(10)).toBe(0);
  });

  test("a raised rate credits the time since the last take", () => {
    const bucket = new TokenBucket(0.1, 0);
    bucket.tryTake(0);

    bucket.setRate(1000);

    expect(bucket.tryTake(5)).toBe(0);
  });

  test("isFull once every token is back", () => {
    const bucket = new TokenBucket(2, 0);
    expect(bucket.isFull(0)).toBe(true);

    bucket.tryTake(0);

    expect(bucket.isFull(0)).toBe(false);
    expect(bucket.isFull(499)).toBe(false);
    expect(bucket.isFull(500)).toBe(true);
  });

  test("a clock step backwards adds nothing", () => {
    const bucket = new TokenBucket(1, 1000);
    bucket.tryTake(1000);

    expect(bucket.tryTake(500)).toBe(1000);
    expect(bucket.tryTake(2000)).toBe(0);
  });
});
