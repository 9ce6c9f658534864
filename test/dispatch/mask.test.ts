import { describe, expect, test } from "vitest";

import { maskPhone } from "../../src/dispatch/mask.js";

describe("maskPhone", () => {
  const cases: Array<[string, string]> = [
    ["+15551234567", "***567"],
    ["+1 (555) 123-4567", "***567"],
    ["12345", "***345"],
    ["1234", "***234"],
    ["123", "***"],
    ["+1", "***"],
    ["", ""],
  ];

  test.each(cases)("masks %j", (phone, expected) => {
    expect(maskPhone(phone)).toBe(expected);
  });
});
