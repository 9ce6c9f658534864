/**
 * Views of a text with one kind of escape sequence decoded: HTML character
 * references, JSON string escapes or URL percent-encoding. Each view keeps
 * where every decoded character starts in the original text, so that a
 * match found in a view can be replaced in the original.
 */

/** A text with one kind of escape sequence decoded. */
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
 * `&#1114111;`, or a decimal reference with leading zeros, has 10.
 */
export const MAX_ESCAPE_LENGTH = 10;

const HTML_REFERENCE = /&(?:(amp|lt|gt|quot|apos)|#([0-9]{1,7})|#[xX]([0-9a-fA-F]{1,6}));/iy;
const HTML_NAMED: Record<string, string> = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'" };
const JSON_ESCAPE = /\\(?:(["\\/bfnrt])|u([0-9a-fA-F]{4}))/y;
const JSON_SHORT: Record<string, string> = { '"': '"', "\\": "\\", "/": "/", b: "\b", f: "\f", n: "\n", r: "\r", t: "\t" };

/** A decoder of one escape sequence at `lastIndex` of its sticky pattern. */
interface EscapeKind {
  /** Characters that start this kind of escape; a text without them needs no view. */
  starts: RegExp;
  pattern: RegExp;
  /** Returns the decoded text of a match, or undefined to keep the original characters. */
  decode(match: RegExpExecArray): string | undefined;
}

const ESCAPE_KINDS: readonly EscapeKind[] = [
  {
    starts: /&/,
    pattern: HTML_REFERENCE,
    decode: ([, name, decimal, hex]) => {
      if (name !== undefined) {
        return HTML_NAMED[name.toLowerCase()];
      }
      return codePointText(decimal !== undefined ? Number.parseInt(decimal, 10) : Number.parseInt(hex!, 16));
    },
  },
  {
    starts: /\\/,
    pattern: JSON_ESCAPE,
    decode: ([, short, unit]) => (short !== undefined ? JSON_SHORT[short] : String.fromCharCode(Number.parseInt(unit!, 16))),
  },
  {
    // A form body writes a space as `+`. Each byte becomes the character of
    // that code, so a multi-byte character stays as its UTF-8 bytes.
    starts: /[%+]/,
    pattern: /%([0-9a-fA-F]{2})|\+/y,
    decode: ([whole, hex]) => (whole === "+" ? " " : String.fromCharCode(Number.parseInt(hex!, 16))),
  },
];

/** Returns a view for each kind of escape that `text` may contain, with the escapes of that kind decoded. */
export function decodedViews(text: string): DecodedView[] {
  const views: DecodedView[] = [];
  for (const kind of ESCAPE_KINDS) {
    if (kind.starts.test(text)) {
      views.push(decodeView(text, kind));
    }
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
    [text.lastIndexOf("&"), /^&(?:[a-zA-Z]{0,5}|#[0-9]{0,7}|#[xX][0-9a-fA-F]{0,6})$/],
    [text.lastIndexOf("\\"), /^\\(?:u[0-9a-fA-F]{0,3})?$/],
    [text.lastIndexOf("%"), /^%[0-9a-fA-F]?$/],
  ] as const;
  for (const [index, unfinished] of candidates) {
    if (index !== -1 && index >= tail && unfinished.test(text.slice(index))) {
      start = Math.min(start, index);
    }
  }
  return start;
}

function decodeView(text: string, kind: EscapeKind): DecodedView {
  let decoded = "";
  const origin: number[] = [];
  let index = 0;
  while (index < text.length) {
    kind.pattern.lastIndex = index;
    const match = kind.pattern.exec(text);
    const value = match === null ? undefined : kind.decode(match);
    if (match === null || value === undefined) {
      decoded += text[index];
      origin.push(index);
      index += 1;
      continue;
    }
    for (let unit = 0; unit < value.length; unit++) {
      origin.push(index);
    }
    decoded += value;
    index += match[0].length;
  }
  origin.push(text.length);
  return { text: decoded, origin };
}

function codePointText(codePoint: number): string | undefined {
  return codePoint <= 0x10ffff ? String.fromCodePoint(codePoint) : undefined;
}
