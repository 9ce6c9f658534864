import { isLosslessNumber } from "lossless-json";
import { describe, expect, test } from "vitest";

import { readJsonPath } from "../../src/dispatch/json-path.js";
import { parseJsonLossless } from "../../src/dispatch/json-value.js";

/** Returns the value at a path as text, numbers digit-exact, or "<missing>". */
function lookUp(json: string, path: string): unknown {
  const lookup = readJsonPath(parseJsonLossless(json), path);
  if (!lookup.found) {
    return "<missing>";
  }
  return isLosslessNumber(lookup.value) ? `number ${lookup.value.value}` : lookup.value;
}

describe("readJsonPath", () => {
  const cases: Array<[string, string, string, unknown]> = [
    ["reads a nested key", '{"data": {"id": "m1"}}', "data.id", "m1"],
    ["reads a top-level key", '{"id": "m1"}', "id", "m1"],
    ["indexes an array", '{"messages": [{"id": "a"}, {"id": "b"}]}', "messages.1.id", "b"],
    ["indexes a top-level array", '[{"id": "a"}]', "0.id", "a"],
    ["reads a key with hyphens", '{"data": {"message-id": "m1"}}', "data.message-id", "m1"],
    ["reads a numeric key of an object", '{"data": {"0": "zero"}}', "data.0", "zero"],
    ["keeps big integers digit-exact", '{"data": {"id": 12345678901234567890123}}', "data.id", "number 12345678901234567890123"],
    ["keeps decimals as written", '{"data": {"id": 1.50}}', "data.id", "number 1.50"],
    ["returns null as found", '{"data": {"id": null}}', "data.id", null],
    ["returns an object as found", '{"data": {"id": {"v": "x"}}}', "data.id", { v: "x" }],
    ["misses an absent key", '{"data": {}}', "data.id", "<missing>"],
    ["misses below a scalar", '{"data": "text"}', "data.id", "<missing>"],
    ["misses an index past the end", '{"messages": []}', "messages.0", "<missing>"],
    ["misses a non-numeric segment on an array", '{"messages": ["a"]}', "messages.length", "<missing>"],
    ["misses an index with a leading zero", '{"messages": ["a"]}', "messages.00", "<missing>"],
    ["misses an inherited key", '{"data": {}}', "data.constructor", "<missing>"],
    ["misses __proto__ unless own", '{"data": {}}', "data.__proto__", "<missing>"],
    ["reads an own __proto__ key", '{"data": {"__proto__": "own"}}', "data.__proto__", "own"],
    ["keeps the last duplicate key", '{"data": {"id": "a", "id": "b"}}', "data.id", "b"],
  ];

  test.each(cases)("%s", (_name, json, path, expected) => {
    expect(lookUp(json, path)).toEqual(expected);
  });
});
