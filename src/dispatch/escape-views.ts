/**
 * Views of a text with escape sequences decoded: HTML character references,
 * JSON string escapes and URL percent-encoding, one kind at a time and all
 * kinds mixed. Each view keeps where every decoded character starts in the
 * original text, so that a match found in a view can be replaced in the
 * original.
 */

/** A text with escape sequences decoded. */
export interface DecodedView {
  text: string;
  /**
   * For each character of `text`, its start index in the original text,
   * followed by the original's length: `origin[i]` to `origin[i + n]` is
   * the original of the view's characters `i` to `i + n`.
   */
  origin: number[];
}

/**
 * Length of the longest escape of one character that the views decode:
 * a numeric reference of ten digits such as `&#0000000039;` has 13.
 */
export const MAX_ESCAPE_LENGTH = 13;

/** Named references of HTML for the ASCII characters that escaping functions and keys use. */
const HTML_NAMED: Record<string, string> = {
  amp: "&", lt: "<", gt: ">", quot: '"', apos: "'", excl: "!", num: "#", dollar: "$", percnt: "%",
  lpar: "(", rpar: ")", ast: "*", plus: "+", comma: ",", period: ".", sol: "/", colon: ":", semi: ";",
  equals: "=", quest: "?", commat: "@", lsqb: "[", bsol: "\\", rsqb: "]", hat: "^", lowbar: "_",
  grave: "`", lcub: "{", verbar: "|", rcub: "}", lbrack: "[", rbrack: "]", lbrace: "{", rbrace: "}",
  vert: "|", underbar: "_", midast: "*",
};
const JSON_SHORT: Record<string, string> = { '"': '"', "\\": "\\", "/": "/", b: "\b", f: "\f", n: "\n", r: "\r", t: "\t" };

/** Characters decoded from one escape, and where each starts, counted from the escape's start. */
interface Decoded {
  value: string;
  /** Start of each UTF-16 unit of `value` in the escape; every unit starts at 0 when unset. */
  offsets?: number[];
}

/** A decoder of one kind of escape sequence, matched at `lastIndex` of its sticky pattern. */
interface EscapeKind {
  /** Characters that start this kind of escape; a text without them needs no view. */
  starts: RegExp;
  pattern: RegExp;
  /** Returns what a match decodes to, or undefined to keep the original characters. */
  decode(match: RegExpExecArray): Decoded | undefined;
}

const HTML: EscapeKind = {
  starts: /&/,
  // A numeric reference may end without `;`, as HTML parsers read it.
  pattern: /&(?:([a-zA-Z]{2,8});|#([0-9]{1,10});?|#[xX]([0-9a-fA-F]{1,6});?)/y,
  decode: ([, name, decimal, hex]) => {
    if (name !== undefined) {
      const value = HTML_NAMED[name.toLowerCase()];
      return value === undefined ? undefined : { value };
    }
    const codePoint = decimal !== undefined ? Number.parseInt(decimal, 10) : Number.parseInt(hex!, 16);
    return codePoint <= 0x10ffff ? { value: String.fromCodePoint(codePoint) } : undefined;
  },
};

const JSON_STRING: EscapeKind = {
  starts: /\\/,
  pattern: /\\(?:(["\\/bfnrt])|u([0-9a-fA-F]{4}))/y,
  decode: ([, short, unit]) => ({ value: short !== undefined ? JSON_SHORT[short]! : String.fromCharCode(Number.parseInt(unit!, 16)) }),
};

const PERCENT: EscapeKind = {
  starts: /%/,
  pattern: /(?:%[0-9a-fA-F]{2})+/y,
  decode: ([run]) => decodePercentRun(run),
};

const FORM_SPACE: EscapeKind = { starts: /\+/, pattern: /\+/y, decode: () => ({ value: " " }) };

/** Characters that start an escape of any of the kinds above. */
const ESCAPE_START = /[&\\%+]/g;

/**
 * Returns the views of `text` to search besides the text itself: each kind
 * of escape decoded alone, then all kinds mixed in one pass. Form encoding
 * writes a space as `+`, which other URL encodings keep as a plus sign, so
 * the mixed kinds come in two views, one of each reading.
 */
export function decodedViews(text: string): DecodedView[] {
  const html = HTML.starts.test(text);
  const json = JSON_STRING.starts.test(text);
  const percent = PERCENT.starts.test(text);
  const plus = FORM_SPACE.starts.test(text);
  const views: DecodedView[] = [];
  if (html) {
    views.push(decodeView(text, [HTML]));
  }
  if (json) {
    views.push(decodeView(text, [JSON_STRING]));
  }
  if (percent || plus) {
    views.push(decodeView(text, [PERCENT, FORM_SPACE]));
  }
  // The mixed views differ from those above only with two kinds present, or a plus sign beside percent-encoding.
  if (Number(html) + Number(json) + Number(percent) > 1 || (percent && plus)) {
    views.push(decodeView(text, [HTML, JSON_STRING, PERCENT]));
  }
  if (plus && (html || json)) {
    views.push(decodeView(text, [HTML, JSON_STRING, PERCENT, FORM_SPACE]));
  }
  return views;
}

/**
 * Returns the index where an escape sequence that the end of `text` cut
 * short begins, or `text.length` when the text does not end inside one.
 */
export function unfinishedEscapeStart(text: string): number {
  const tail = text.length - MAX_ESCAPE_LENGTH;
  let start = text.length;
  const candidates = [
    [text.lastIndexOf("&"), /^&(?:[a-zA-Z]{0,8}|#[0-9]{0,10}|#[xX][0-9a-fA-F]{0,6})$/],
    [text.lastIndexOf("\\"), /^\\(?:u[0-9a-fA-F]{0,3})?$/],
    [text.lastIndexOf("%"), /^%[0-9a-fA-F]?$/],
  ] as const;
  for (const [index, unfinished] of candidates) {
    if (index !== -1 && index >= tail && unfinished.test(text.slice(index))) {
      start = Math.min(start, index);
    }
  }
  // A run of percent-encoded bytes may stop inside one character of several bytes, of which
  // the last 4 bytes (12 characters) tell. Only they are searched, which keeps this linear.
  const tailStart = Math.max(0, start - 12);
  const bytes = /(?:%[0-9a-fA-F]{2})+$/.exec(text.slice(tailStart, start));
  const lead = bytes === null ? -1 : unfinishedCharacterStart(percentBytes(bytes[0]));
  if (bytes !== null && lead !== -1) {
    start = tailStart + bytes.index + lead * 3;
  }
  return start;
}

// NOTE: every character that may start an escape costs a pattern match per view, so a reply id of
// 1 MiB made only of such characters took about half a second to redact in a micro-benchmark.
function decodeView(text: string, kinds: readonly EscapeKind[]): DecodedView {
  let decoded = "";
  const origin: number[] = [];
  let index = 0;
  while (index < text.length) {
    // Text up to the next character that may start an escape of any kind is copied as it is.
    ESCAPE_START.lastIndex = index;
    const next = ESCAPE_START.exec(text)?.index ?? text.length;
    decoded += text.slice(index, next);
    for (; index < next; index++) {
      origin.push(index);
    }
    if (index === text.length) {
      break;
    }
    const escape = decodeAt(text, index, kinds);
    if (escape === undefined) {
      decoded += text[index];
      origin.push(index);
      index += 1;
      continue;
    }
    const { value, offsets } = escape.decoded;
    for (let unit = 0; unit < value.length; unit++) {
      origin.push(index + (offsets?.[unit] ?? 0));
    }
    decoded += value;
    index += escape.length;
  }
  origin.push(text.length);
  return { text: decoded, origin };
}

function decodeAt(text: string, index: number, kinds: readonly EscapeKind[]): { decoded: Decoded; length: number } | undefined {
  for (const kind of kinds) {
    kind.pattern.lastIndex = index;
    const match = kind.pattern.exec(text);
    const decoded = match === null ? undefined : kind.decode(match);
    if (match !== null && decoded !== undefined) {
      return { decoded, length: match[0].length };
    }
  }
  return undefined;
}

/**
 * Decodes a run of `%XX` bytes as UTF-8, or byte by byte as Latin-1 when
 * they are not valid UTF-8, with the start of each character in the run.
 */
function decodePercentRun(run: string): Decoded {
  const bytes = percentBytes(run);
  let value = "";
  const offsets: number[] = [];
  let byte = 0;
  while (byte < bytes.length) {
    const size = validUtf8Size(bytes, byte);
    const character = size === 0 ? String.fromCharCode(bytes[byte]!) : bytes.toString("utf8", byte, byte + size);
    for (let unit = 0; unit < character.length; unit++) {
      offsets.push(byte * 3);
    }
    value += character;
    byte += Math.max(size, 1);
  }
  return { value, offsets };
}

/**
 * Returns the length of the UTF-8 character of several bytes that starts at
 * `start`, or 0 when none does (an ASCII byte or an invalid sequence).
 */
function validUtf8Size(bytes: Buffer, start: number): number {
  const lead = bytes[start]!;
  if (lead < 0xc2 || lead > 0xf4) {
    return 0;
  }
  const size = utf8Size(lead);
  if (start + size > bytes.length) {
    return 0;
  }
  for (let next = start + 1; next < start + size; next++) {
    if ((bytes[next]! & 0xc0) !== 0x80) {
      return 0;
    }
  }
  // RFC 3629 narrows the second byte after these leads, which rules out overlong forms,
  // UTF-16 surrogates and code points above U+10FFFF.
  const second = bytes[start + 1]!;
  const invalid =
    (lead === 0xe0 && second < 0xa0) ||
    (lead === 0xed && second > 0x9f) ||
    (lead === 0xf0 && second < 0x90) ||
    (lead === 0xf4 && second > 0x8f);
  return invalid ? 0 : size;
}

function percentBytes(run: string): Buffer {
  return Buffer.from(run.replaceAll("%", ""), "hex");
}

/** Returns where a UTF-8 character of several bytes that `bytes` ends inside begins, or -1. */
function unfinishedCharacterStart(bytes: Buffer): number {
  for (let back = 1; back <= Math.min(3, bytes.length); back++) {
    const index = bytes.length - back;
    const byte = bytes[index]!;
    if (byte < 0x80) {
      return -1;
    }
    if (byte >= 0xc0) {
      return back < utf8Size(byte) ? index : -1;
    }
  }
  return -1;
}

/** Returns the number of bytes of a UTF-8 character from its lead byte. */
function utf8Size(leadByte: number): number {
  if (leadByte >= 0xf0) {
    return 4;
  }
  return leadByte >= 0xe0 ? 3 : 2;
}
