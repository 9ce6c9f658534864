import { describe, expect, test } from "vitest";

import {
  buildArrivedBodyExcerpt,
  buildBodyExcerpt,
  EXCERPT_BYTES,
  excerptReadBytes,
  redactSecrets,
  redactValue,
  secretForms,
} from "../../src/dispatch/redact.js";

const SECRET = "sk_live_0123456789abcdef";

describe("redactSecrets", () => {
  const cases: Array<[string, string, string[], string]> = [
    ["replaces every occurrence", `a ${SECRET} b ${SECRET}`, [SECRET], "a [REDACTED] b [REDACTED]"],
    ["replaces several secrets", "key=k1&secret=s2", ["k1", "s2"], "key=[REDACTED]&secret=[REDACTED]"],
    ["replaces overlapping secrets once", "abcdef", ["abcd", "cdef"], "[REDACTED]"],
    ["replaces the JSON-escaped form", '{"echo":"a\\"b\\\\c"}', ['a"b\\c'], '{"echo":"[REDACTED]"}'],
    ["replaces the percent-encoded form", "https://x/?k=a%2Fb%20c", ["a/b c"], "https://x/?k=[REDACTED]"],
    ["replaces the base64 form", `Location: /x?t=${Buffer.from(SECRET).toString("base64")}`, [SECRET], "Location: /x?t=[REDACTED]"],
    ["replaces the base64url form", `t=${Buffer.from("a?b>c~").toString("base64url")}`, ["a?b>c~"], "t=[REDACTED]"],
    ["replaces an upper-case echo", `a ${SECRET.toUpperCase()} b`, [SECRET], "a [REDACTED] b"],
    ["replaces a mixed-case echo", "id=AbCdEf99", ["abcdef99"], "id=[REDACTED]"],
    ["replaces the HTML-escaped form", "<p>key: a&amp;b&lt;c&quot;d&#39;e</p>", ["a&b<c\"d'e"], "<p>key: [REDACTED]</p>"],
    ["keeps other text's case", `Bad KEY ${SECRET.toUpperCase()} Here`, [SECRET], "Bad KEY [REDACTED] Here"],
    ["replaces a hexadecimal HTML reference", "key a&#x27;b&amp;c-000", ["a'b&c-000"], "key [REDACTED]"],
    ["replaces a zero-padded HTML reference", "key a&#039;b&#34;c-000", [`a'b"c-000`], "key [REDACTED]"],
    ["replaces partly escaped HTML", "key a'b&amp;c&lt;d-000", ["a'b&c<d-000"], "key [REDACTED]"],
    ["replaces upper-case HTML names", "key a&AMP;b-0000000", ["a&b-0000000"], "key [REDACTED]"],
    ["replaces a JSON-escaped slash", '{"e":"AbC\\/dEf+gHi0123"}', ["AbC/dEf+gHi0123"], '{"e":"[REDACTED]"}'],
    ["replaces JSON unicode escapes", "k=\\u0061\\u0062cdefgh1", ["abcdefgh1"], "k=[REDACTED]"],
    ["replaces form encoding", "k=a+b%21c%7Ed%2A%28e%29", ["a b!c~d*(e)"], "k=[REDACTED]"],
    ["replaces a percent-encoded Latin-1 key", "k=cl%C3%A9-0123456789", ["clé-0123456789"], "k=[REDACTED]"],
    ["replaces a Latin-1 echo read as UTF-8", "echo cl\ufffd-0123456789abcdef end", ["clé-0123456789abcdef"], "echo [REDACTED] end"],
    ["replaces Latin-1 letters in upper case", "echo CLÉ-0123456789ABCDEF end", ["clé-0123456789abcdef"], "echo [REDACTED] end"],
    ["keeps the case of short secrets", "Check KEY key", ["key"], "Check KEY [REDACTED]"],
    ["replaces HTML and JSON escapes mixed", "k=&#65;&#98;\\u0063\\u0064efgh1", ["Abcdefgh1"], "k=[REDACTED]"],
    ["replaces an HTML echo quoted as JSON", 'date "Ab\\"cd&amp;ef1234" at', ['Ab"cd&ef1234'], 'date "[REDACTED]" at'],
    ["replaces a plus sign beside percent-encoding", "/login/Zq+8/x=%20aB3kL9", ["Zq+8/x= aB3kL9"], "/login/[REDACTED]"],
    ["replaces Latin-1 percent-encoded in upper case", "id=%C3%89%C3%89L%C3%89PHANT99", ["ééléphant99"], "id=[REDACTED]"],
    ["replaces one run of a repeated character once", "a".repeat(20), ["aaaaaaaa"], "[REDACTED]"],
    ["replaces a form space beside an HTML escape", "k=Ab+Cd&#45;Ef12", ["Ab Cd-Ef12"], "k=[REDACTED]"],
    ["replaces UTF-8 after an invalid byte", `k=%FF${encodeURIComponent("Clé-Secret-ÄÖ1")}`, ["Clé-Secret-ÄÖ1"], "k=%FF[REDACTED]"],
    ["replaces UTF-8 bytes read as Latin-1", "to http://a/?k=bÃ¼cher-key1", ["bücher-key1"], "to http://a/?k=[REDACTED]"],
    ["replaces longer HTML names", "k=a&UnderBar;b&lbrack;c&rbrack;d1", ["a_b[c]d1"], "k=[REDACTED]"],
    ["replaces a padded secret echoed trimmed", `id ${SECRET}!`, [`  ${SECRET}\t`], "id [REDACTED]!"],
    ["replaces a padded secret echoed whole", `id " ${SECRET} "`, [` ${SECRET} `], 'id "[REDACTED]"'],
    ["skips empty secrets", "text", [""], "text"],
    ["keeps text without secrets", "nothing here", [SECRET], "nothing here"],
  ];

  test.each(cases)("%s", (_name, text, secrets, expected) => {
    expect(redactSecrets(text, secretForms(secrets))).toBe(expected);
  });
});

describe("buildBodyExcerpt", () => {
  const forms = secretForms([SECRET]);

  test("keeps a short body whole", () => {
    const excerpt = buildBodyExcerpt(Buffer.from(`{"error":"bad key ${SECRET}"}`), true, forms);
    expect(excerpt).toEqual({ text: '{"error":"bad key [REDACTED]"}', truncated: false });
  });

  test("cuts a long body at 1 KiB", () => {
    const body = Buffer.from("x".repeat(5000));
    const excerpt = buildBodyExcerpt(body.subarray(0, excerptReadBytes(forms) + 1), false, forms);
    expect(excerpt.text).toBe("x".repeat(EXCERPT_BYTES));
    expect(excerpt.truncated).toBe(true);
  });

  test("marks a body of 1 KiB and one byte as truncated", () => {
    const excerpt = buildBodyExcerpt(Buffer.from("y".repeat(EXCERPT_BYTES + 1)), true, forms);
    expect(excerpt.text).toHaveLength(EXCERPT_BYTES);
    expect(excerpt.truncated).toBe(true);
  });

  test("keeps a body of exactly 1 KiB whole", () => {
    const excerpt = buildBodyExcerpt(Buffer.from("y".repeat(EXCERPT_BYTES)), true, forms);
    expect(excerpt.truncated).toBe(false);
  });

  // A secret that starts before the cut must not leave any part of it behind.
  test.each([1, 5, SECRET.length - 1])("redacts a secret cut %d characters in", (charsBeforeCut) => {
    const body = Buffer.from("x".repeat(EXCERPT_BYTES - charsBeforeCut) + SECRET + "z".repeat(100));
    const excerpt = buildBodyExcerpt(body.subarray(0, excerptReadBytes(forms) + 1), false, forms);
    expect(excerpt.text).toBe("x".repeat(EXCERPT_BYTES - charsBeforeCut) + "[REDACTED]");
    expect(excerpt.text).not.toContain(SECRET.slice(0, charsBeforeCut));
  });

  test("redacts a fully escaped secret cut in", () => {
    // Every character as a zero-padded decimal reference, the longest escape the redaction decodes.
    const escaped = [...SECRET].map((character) => `&#${String(character.charCodeAt(0)).padStart(7, "0")};`).join("");
    const body = Buffer.from("x".repeat(EXCERPT_BYTES - 20) + escaped + "z".repeat(100));
    const excerpt = buildBodyExcerpt(body.subarray(0, excerptReadBytes(forms) + 1), false, forms);
    expect(excerpt.text).toBe("x".repeat(EXCERPT_BYTES - 20) + "[REDACTED]");
  });

  test("cuts by the original body when redaction shortens it", () => {
    // Each redaction shortens the text, which must not pull a later secret's start into the excerpt.
    const prefix = `${SECRET} `.repeat(10);
    const filler = "x".repeat(EXCERPT_BYTES - prefix.length - 3);
    const body = Buffer.from(prefix + filler + "abc" + "y".repeat(10) + SECRET);
    const excerpt = buildBodyExcerpt(body.subarray(0, excerptReadBytes(forms) + 1), false, forms);
    expect(excerpt.text).toBe("[REDACTED] ".repeat(10) + filler + "abc");
    expect(excerpt.text).not.toContain(SECRET.slice(0, 5));
  });

  test("never splits a multi-byte character", () => {
    const body = Buffer.from("x".repeat(EXCERPT_BYTES - 1) + "é".repeat(50));
    const excerpt = buildBodyExcerpt(body.subarray(0, excerptReadBytes(forms) + 1), false, forms);
    expect(excerpt.text).toBe("x".repeat(EXCERPT_BYTES - 1));
    expect(excerpt.text).not.toContain("\uFFFD");
  });
});

describe("buildArrivedBodyExcerpt", () => {
  const forms = secretForms([SECRET]);
  const cases: Array<[string, string, string]> = [
    ["keeps a body without secrets", '{"error":"slow', '{"error":"slow'],
    ["redacts a whole secret", `{"error":"bad key ${SECRET}`, '{"error":"bad key [REDACTED]'],
    ["drops the start of a secret at the end", `{"error":"bad key ${SECRET.slice(0, 10)}`, '{"error":"bad key '],
    ["drops one character that starts a secret", '{"error":"bad key s', '{"error":"bad key '],
    ["drops the upper-case start of a secret", `{"error":"bad key ${SECRET.slice(0, 10).toUpperCase()}`, '{"error":"bad key '],
    ["drops an escaped start of a secret", "bad key a&#x22;", "bad key "],
    ["drops an escape cut short", "bad key a&#x2", "bad key "],
    ["drops the start of an escaped secret", `bad key ${JSON.stringify('a"b').slice(1, 3)}`, "bad key "],
  ];

  test.each(cases)("%s", (_name, arrived, expected) => {
    const excerpt = buildArrivedBodyExcerpt(Buffer.from(arrived), secretForms([SECRET, 'a"b']));
    expect(excerpt).toEqual({ text: expected, truncated: true });
  });

  test("cuts at 1 KiB", () => {
    const excerpt = buildArrivedBodyExcerpt(Buffer.from("z".repeat(EXCERPT_BYTES + 10)), forms);
    expect(excerpt).toEqual({ text: "z".repeat(EXCERPT_BYTES), truncated: true });
  });
});

describe("redactValue", () => {
  test.each([
    { name: "a long secret inside", value: "id-Secret-0123456789", secrets: ["secret-0123456789"], expected: "id-[REDACTED]" },
    { name: "a short secret inside", value: "msg_25_8bc32bdb", secrets: ["2", "bd"], expected: "msg_25_8bc32bdb" },
    { name: "a short secret as the whole value", value: "k42", secrets: ["k42"], expected: "[REDACTED]" },
    { name: "a short secret in another letter case", value: "K42", secrets: ["k42"], expected: "K42" },
    { name: "no secret", value: "m1", secrets: [], expected: "m1" },
  ])("$name", ({ value, secrets, expected }) => {
    expect(redactValue(value, secretForms(secrets))).toBe(expected);
  });
});
