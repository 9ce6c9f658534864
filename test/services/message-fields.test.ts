import { expect, test } from "vitest";
import { contentProblem, recipientProblem, senderProblem } from "../../src/services/message-fields.js";

// An emoji is two UTF-16 code units and one code point.
const EMOJI = "\u{1F600}";

test.each([
  { field: "to", check: recipientProblem, max: 64 },
  { field: "content", check: contentProblem, max: 10_000 },
  { field: "sender", check: senderProblem, max: 64 },
])("$field counts emoji once", ({ check, max }) => {
  expect(check(EMOJI.repeat(max))).toBeNull();
  expect(check(EMOJI.repeat(max + 1))).toBe(`longer than ${max} characters`);
  expect(check("a".repeat(max))).toBeNull();
  expect(check("a".repeat(max + 1))).toBe(`longer than ${max} characters`);
});
