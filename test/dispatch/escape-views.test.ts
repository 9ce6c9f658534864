import { describe, expect, test } from "vitest";

import { decodedViews, unfinishedEscapeStart } from "../../src/dispatch/escape-views.js";

describe("decodedViews", () => {
  test("text without escapes has no views", () => {
    expect(decodedViews("plain text 123")).toEqual([]);
  });

  test("HTML view maps characters back", () => {
    const [view] = decodedViews("a&amp;b&#x1F600;c");

    expect(view?.text).toBe("a&b\u{1F600}c");
    // Both UTF-16 units of the emoji start at its reference.
    expect(view?.origin).toEqual([0, 1, 6, 7, 7, 16, 17]);
  });

  test("JSON view decodes short and unicode escapes", () => {
    const [view] = decodedViews("x\\/y\\u0041");

    expect(view?.text).toBe("x/yA");
    expect(view?.origin).toEqual([0, 1, 3, 4, 10]);
  });

  test("percent view decodes bytes and plus", () => {
    const [view] = decodedViews("a+b%2Fc");

    expect(view?.text).toBe("a b/c");
    expect(view?.origin).toEqual([0, 1, 2, 3, 6, 7]);
  });

  test("invalid references stay as they are", () => {
    const [view] = decodedViews("&#x110000; &bogus; &#;");

    expect(view?.text).toBe("&#x110000; &bogus; &#;");
  });

  test("one view per kind, then all mixed", () => {
    expect(decodedViews("&lt; \\n %20").map((view) => view.text)).toEqual(["< \\n %20", "&lt; \n %20", "&lt; \\n  ", "< \n  "]);
  });

  test("mixed view keeps a plus sign", () => {
    expect(decodedViews("a+b%20c").map((view) => view.text)).toEqual(["a b c", "a+b c"]);
  });

  test("percent runs decode as UTF-8", () => {
    const [view] = decodedViews("x%C3%A9%E2%82%ACy");

    expect(view?.text).toBe("xé€y");
    expect(view?.origin).toEqual([0, 1, 7, 16, 17]);
  });

  test("invalid UTF-8 bytes read as Latin-1", () => {
    expect(decodedViews("cl%E9")[0]?.text).toBe("clé");
  });

  test("encoded U+FFFD stays one character", () => {
    expect(decodedViews("%EF%BF%BD")[0]?.text).toBe("\ufffd");
  });

  test("overlong and surrogate bytes read as Latin-1", () => {
    expect(decodedViews("%E0%80%AF")[0]?.text).toBe("\u00e0\u0080\u00af");
    expect(decodedViews("%ED%A0%80")[0]?.text).toBe("\u00ed\u00a0\u0080");
  });

  test("HTML names for punctuation", () => {
    expect(decodedViews("a&plus;b&sol;c&equals;&Hat;")[0]?.text).toBe("a+b/c=^");
  });

  test("numeric references without a semicolon", () => {
    expect(decodedViews("&#65bc&#x42;&#0000000067")[0]?.text).toBe("AbcBC");
  });
});

describe("unfinishedEscapeStart", () => {
  const cases: Array<[string, string, number]> = [
    ["no escape", "abc", 3],
    ["finished reference", "a&amp;", 6],
    ["cut hexadecimal reference", "ab&#x2", 2],
    ["cut decimal reference", "ab&#03", 2],
    ["cut name", "ab&am", 2],
    ["lone ampersand", "ab&", 2],
    ["cut unicode escape", "ab\\u00", 2],
    ["lone backslash", "ab\\", 2],
    ["cut percent byte", "ab%2", 2],
    ["cut UTF-8 character", "ab%41%C3", 5],
    ["whole UTF-8 character", "ab%C3%A9", 8],
    ["cut character after a long run", `${"%41".repeat(5000)}%C3`, 15000],
    ["long run of whole characters", `${"%41".repeat(5000)}x`, 15001],
    ["ampersand followed by text", "a & b", 5],
    ["escape too far back", `&#x2${"z".repeat(20)}`, 24],
  ];

  test.each(cases)("%s", (_name, text, expected) => {
    expect(unfinishedEscapeStart(text)).toBe(expected);
  });
});
