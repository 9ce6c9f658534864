import { setFlagsFromString } from "node:v8";
import { describe, expect, test } from "vitest";
import { copyWith } from "../src/copy-with.js";

describe("copyWith", () => {
  test("extra fields win over the base", () => {
    const base = { id: "m-1", attempts: 1 };

    const copy = copyWith(base, { attempts: 2, replayed: false });

    expect(copy).toEqual({ id: "m-1", attempts: 2, replayed: false });
    expect(base).toEqual({ id: "m-1", attempts: 1 });
  });

  // A leading spread followed by a new field gives each object a hidden class of its own on
  // Node 20, once V8 has run the literal a few times, so the test makes many copies.
  // %HaveSameMap is V8's own check of the hidden class.
  test("copies share one hidden class", () => {
    setFlagsFromString("--allow-natives-syntax");
    const haveSameMap = new Function("a", "b", "return %HaveSameMap(a, b)") as (a: object, b: object) => boolean;
    const copies = Array.from({ length: 2000 }, (_, index) => copyWith({ id: `m-${index}`, attempts: index }, { replayed: false }));

    const differing = copies.filter((copy) => !haveSameMap(copies[0]!, copy));

    expect(differing).toHaveLength(0);
  });
});
