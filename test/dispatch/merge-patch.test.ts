import { describe, expect, test } from "vitest";

import type { JsonValue } from "../../src/dispatch/json-value.js";
import { applyMergePatch } from "../../src/dispatch/merge-patch.js";

/** Round-trips through JSON, so results compare by content and not by prototype. */
function asJson(value: JsonValue): unknown {
  return JSON.parse(JSON.stringify(value));
}

describe("applyMergePatch", () => {
  // The first 15 rows are the examples of RFC 7396, Appendix A.
  const cases: Array<[string, JsonValue, JsonValue, JsonValue]> = [
    ["replaces a value", { a: "b" }, { a: "c" }, { a: "c" }],
    ["adds a key", { a: "b" }, { b: "c" }, { a: "b", b: "c" }],
    ["removes a key with null", { a: "b" }, { a: null }, {}],
    ["removes one key of two", { a: "b", b: "c" }, { a: null }, { b: "c" }],
    ["replaces an array with a string", { a: ["b"] }, { a: "c" }, { a: "c" }],
    ["replaces a string with an array", { a: "c" }, { a: ["b"] }, { a: ["b"] }],
    ["merges nested objects", { a: { b: "c" } }, { a: { b: "d", c: null } }, { a: { b: "d" } }],
    ["replaces an array of objects", { a: [{ b: "c" }] }, { a: [1] }, { a: [1] }],
    ["replaces a top-level array", ["a", "b"], ["c", "d"], ["c", "d"]],
    ["replaces an object with an array", { a: "b" }, ["c"], ["c"]],
    ["replaces an object with null", { a: "foo" }, null, null],
    ["replaces an object with a string", { a: "foo" }, "bar", "bar"],
    ["keeps a null in the target", { e: null }, { a: 1 }, { e: null, a: 1 }],
    ["replaces an array with an object", [1, 2], { a: "b", c: null }, { a: "b" }],
    ["drops nulls inside a new object", {}, { a: { bb: { ccc: null } } }, { a: { bb: {} } }],
    ["replaces arrays instead of appending", { tags: ["x", "y"] }, { tags: ["z"] }, { tags: ["z"] }],
    ["keeps nulls inside a replacing array", {}, { list: [null, 1] }, { list: [null, 1] }],
    ["removes a missing key quietly", { a: 1 }, { b: null }, { a: 1 }],
    ["replaces a default field", { to: "+1", sender: "ACME" }, { sender: "OTHER" }, { to: "+1", sender: "OTHER" }],
  ];

  test.each(cases)("%s", (_name, target, patch, expected) => {
    expect(asJson(applyMergePatch(target, patch))).toEqual(expected);
  });

  test("leaves both inputs unchanged", () => {
    const target = { a: { b: 1 }, list: [1] };
    const patch = { a: { c: 2, b: null }, list: [2] };
    applyMergePatch(target, patch);
    expect(target).toEqual({ a: { b: 1 }, list: [1] });
    expect(patch).toEqual({ a: { c: 2, b: null }, list: [2] });
  });

  test("does not read inherited keys of the target", () => {
    const result = applyMergePatch({ a: 1 }, { constructor: { x: 1 }, toString: "s" });
    expect(asJson(result)).toEqual({ a: 1, constructor: { x: 1 }, toString: "s" });
  });
});

describe("applyMergePatch with prototype keys", () => {
  const prototypeNamesBefore = Object.getOwnPropertyNames(Object.prototype).sort();

  // Patches come from JSON.parse, which creates "__proto__" as an own property, as a decoded request does.
  const cases: Array<[string, string]> = [
    ['{"__proto__": {"polluted": "yes"}}', '{"to":"+1","__proto__":{"polluted":"yes"}}'],
    ['{"constructor": {"prototype": {"polluted": "yes"}}}', '{"to":"+1","constructor":{"prototype":{"polluted":"yes"}}}'],
    ['{"prototype": {"polluted": "yes"}}', '{"to":"+1","prototype":{"polluted":"yes"}}'],
    ['{"a": {"__proto__": {"polluted": "yes"}}}', '{"to":"+1","a":{"__proto__":{"polluted":"yes"}}}'],
  ];

  test.each(cases)("carries %s as own keys", (patchText, expectedText) => {
    const result = applyMergePatch({ to: "+1" }, JSON.parse(patchText) as JsonValue);

    expect(JSON.stringify(result)).toBe(expectedText);
    expect(Object.getPrototypeOf(result)).toBeNull();
    expect(({} as Record<string, unknown>)["polluted"]).toBeUndefined();
    expect(Object.getOwnPropertyNames(Object.prototype).sort()).toEqual(prototypeNamesBefore);
  });

  test("merges into an existing __proto__ key", () => {
    const target = JSON.parse('{"__proto__": {"a": 1, "b": 2}}') as JsonValue;
    const patch = JSON.parse('{"__proto__": {"b": null, "c": 3}}') as JsonValue;
    expect(JSON.stringify(applyMergePatch(target, patch))).toBe('{"__proto__":{"a":1,"c":3}}');
  });
});
