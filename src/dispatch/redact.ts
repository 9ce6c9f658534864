import { StringDecoder } from "node:string_decoder";

import { decodedViews, MAX_ESCAPE_LENGTH, unfinishedEscapeStart } from "./escape-views.js";

/** Text that replaces each secret in messages and body excerpts. */
export const REDACTED = "[REDACTED]";

/** Size of the reply body excerpt that errors carry, in bytes. */
export const EXCERPT_BYTES = 1024;

/** A body excerpt with the secrets replaced. */
export interface BodyExcerpt {
  text: string;
  /** True when the body was longer than the excerpt. */
  truncated: boolean;
}

/**
 * Lists the forms of each secret that the redaction looks for: the secret
 * itself, and its base64 and base64url encodings without padding, which
 * cover the secret base64-encoded on its own. A secret with characters
 * from U+0080 to U+00FF adds two more. One has U+FFFD for each of those
 * characters, which is how an echo of the header's Latin-1 bytes reads as
 * UTF-8. The other is its UTF-8 bytes as Latin-1 characters, which is how a
 * gateway that took the header as UTF-8 and sends it back as Latin-1 shows
 * it. A secret with leading or trailing spaces or tabs also gets the forms
 * of its trimmed value, because HTTP parsers remove that whitespace from a
 * header value (RFC 7230, section 3.2.4), so a gateway reads and echoes it
 * trimmed. Empty secrets are skipped.
 *
 * Escaped echoes need no forms of their own: the redaction also searches
 * the text with its HTML character references, JSON string escapes or
 * percent-encoding decoded (see `escape-views.ts`). Forms of at least
 * {@link CASE_FOLD_MIN_LENGTH} characters are returned in lower case and
 * match in any letter case.
 *
 * NOTE: a secret encoded together with other text (such as `user:key` in a
 * Basic authorization value), or escaped twice over, is not recognised.
 */
export function secretForms(secrets: readonly string[]): string[] {
  const forms = new Set<string>();
  const sentForms = secrets.flatMap((secret) => [secret, secret.replace(/^[\t ]+|[\t ]+$/g, "")]);
  for (const secret of new Set(sentForms)) {
    if (secret === "") {
      continue;
    }
    const bytes = Buffer.from(secret);
    const encoded = [secret, bytes.toString("base64").replace(/=+$/, ""), bytes.toString("base64url")];
    if (/[\u0080-\u00ff]/.test(secret)) {
      encoded.push(secret.replace(/[\u0080-\u00ff]/g, "\ufffd"), bytes.toString("latin1"));
    }
    for (const form of encoded) {
      forms.add(form.length >= CASE_FOLD_MIN_LENGTH ? foldCase(form) : form);
    }
  }
  return [...forms];
}

/**
 * Shortest form that matches in any letter case. A short API key such as
 * `k` would otherwise take every K out of the messages around it.
 */
export const CASE_FOLD_MIN_LENGTH = 8;

/** Returns `text` with the letters of ASCII and Latin-1 in lower case; the length stays. */
function foldCase(text: string): string {
  return /[A-Z\u00c0-\u00d6\u00d8-\u00de]/.test(text)
    ? text.replace(/[A-Z\u00c0-\u00d6\u00d8-\u00de]/g, (letter) => String.fromCharCode(letter.charCodeAt(0) + 0x20))
    : text;
}

/** A view of a text to search, as is or with one kind of escape decoded. */
interface SearchView {
  text: string;
  /** The view's text with its letters folded, built when a form needs it. */
  folded?: string;
  /** Start index in the original text of each character of `text`, then the original's length; none for the text as is. */
  origin?: number[];
}

/** Returns the text as is, followed by its views with escapes decoded. */
function searchViews(text: string): SearchView[] {
  return [{ text }, ...decodedViews(text)];
}

/** Returns the text of `view` to search for `form`: folded when the form is, which `secretForms` decided by its length. */
function searchedText(view: SearchView, form: string): string {
  if (form.length < CASE_FOLD_MIN_LENGTH) {
    return view.text;
  }
  view.folded ??= foldCase(view.text);
  return view.folded;
}

/** Returns the original index of the view's character at `index`. */
function originalIndex(view: SearchView, index: number): number {
  return view.origin === undefined ? index : view.origin[index]!;
}

/** Returns the original index where the view's characters up to `end` (exclusive) end, whole escapes included. */
function originalEnd(view: SearchView, end: number): number {
  const origin = view.origin;
  if (origin === undefined) {
    return end;
  }
  // Characters decoded from one escape share its start, so an end inside them moves past the escape.
  let next = end;
  while (next < origin.length - 1 && origin[next] === origin[end - 1]) {
    next += 1;
  }
  return origin[next]!;
}

/**
 * Returns the number of body bytes to read for an excerpt: 1 KiB plus the
 * length of the longest secret form with each character in its longest escape.
 *
 * The extra bytes let `buildBodyExcerpt` see the whole of a secret that
 * starts inside the first 1 KiB and ends after it, so no part of it leaks.
 */
export function excerptReadBytes(forms: readonly string[]): number {
  let longest = 0;
  for (const form of forms) {
    longest = Math.max(longest, Buffer.byteLength(form), form.length * MAX_ESCAPE_LENGTH);
  }
  return EXCERPT_BYTES + longest;
}

/** Replaces every occurrence of each secret form in a text with `[REDACTED]`. */
export function redactSecrets(text: string, forms: readonly string[]): string {
  return redactUpTo(text, forms, text.length);
}

/**
 * Replaces the secret forms in a value that the caller gets as data, such
 * as the gateway's message id. A form shorter than
 * {@link CASE_FOLD_MIN_LENGTH} is replaced only when it is the whole value:
 * an API key of `2` would otherwise turn the id `msg_25` into
 * `msg_[REDACTED]5`, and store it so with an idempotency key.
 *
 * NOTE: a short secret inside a longer value therefore stays visible. A
 * value cannot tell an echo of such a secret from the same characters by chance.
 */
export function redactValue(value: string, forms: readonly string[]): string {
  const longForms: string[] = [];
  for (const form of forms) {
    if (form.length >= CASE_FOLD_MIN_LENGTH) {
      longForms.push(form);
    } else if (value === form) {
      return REDACTED;
    }
  }
  return redactUpTo(value, longForms, value.length);
}

/**
 * Builds the excerpt of a reply body: its first 1 KiB as UTF-8 text, with
 * every secret form replaced by `[REDACTED]`.
 *
 * `bytes` is the start of the body, read up to `excerptReadBytes(forms)`
 * bytes, and `complete` is true when it is the whole body. The cut falls at
 * 1 KiB of the original body, before redaction. A secret that starts before
 * the cut is replaced as a whole, and the cut never splits a character.
 */
export function buildBodyExcerpt(bytes: Buffer, complete: boolean, forms: readonly string[]): BodyExcerpt {
  const truncated = !complete || bytes.length > EXCERPT_BYTES;
  if (!truncated) {
    const text = bytes.toString("utf8");
    return { text: redactUpTo(text, forms, text.length), truncated };
  }

  // StringDecoder holds back a character split at the end of its input.
  const text = new StringDecoder("utf8").write(bytes);
  const cut = new StringDecoder("utf8").write(bytes.subarray(0, EXCERPT_BYTES)).length;
  return { text: redactUpTo(text, forms, cut), truncated };
}

/**
 * Builds the excerpt of a body whose stream failed after `bytes` arrived,
 * like `buildBodyExcerpt` for a body that was cut. The body may have
 * stopped inside a secret, so a tail that begins a secret form is dropped
 * too, because the first characters of that secret would show otherwise.
 */
export function buildArrivedBodyExcerpt(bytes: Buffer, forms: readonly string[]): BodyExcerpt {
  const text = new StringDecoder("utf8").write(bytes);
  const safeText = text.slice(0, keptLength(text, forms));
  return buildBodyExcerpt(Buffer.from(safeText, "utf8"), false, forms);
}

/**
 * Returns the length of `text` without an escape sequence cut short at its
 * end and without the longest end that is the start, but not the whole, of
 * a secret form, in any of the views that the redaction searches.
 */
function keptLength(text: string, forms: readonly string[]): number {
  let keptEnd = unfinishedEscapeStart(text);
  for (const view of searchViews(text.slice(0, keptEnd))) {
    for (const form of forms) {
      const viewText = searchedText(view, form);
      for (let prefix = Math.min(form.length - 1, viewText.length); prefix > 0; prefix--) {
        if (viewText.endsWith(form.slice(0, prefix))) {
          keptEnd = Math.min(keptEnd, originalIndex(view, viewText.length - prefix));
          break;
        }
      }
    }
  }
  return keptEnd;
}

/**
 * Returns `text` up to the index `cut`, with each secret form replaced. A
 * secret that starts before the cut is replaced even when it ends after it.
 */
function redactUpTo(text: string, forms: readonly string[], cut: number): string {
  const ranges: Array<[number, number]> = [];
  for (const view of searchViews(text)) {
    for (const form of forms) {
      const viewText = searchedText(view, form);
      let start = viewText.indexOf(form);
      let last: [number, number] | undefined;
      while (start !== -1 && originalIndex(view, start) < cut) {
        const from = originalIndex(view, start);
        const end = originalEnd(view, start + form.length);
        // Overlapping matches of one form, as in a run of one repeated character, extend one range.
        if (last !== undefined && from <= last[1]) {
          last[1] = Math.max(last[1], end);
        } else {
          last = [from, end];
          ranges.push(last);
        }
        start = viewText.indexOf(form, start + 1);
      }
    }
  }
  if (ranges.length === 0) {
    return text.slice(0, cut);
  }

  ranges.sort((a, b) => a[0] - b[0]);
  let result = "";
  let position = 0;
  for (const [start, end] of ranges) {
    if (start >= position) {
      result += text.slice(position, start) + REDACTED;
    }
    position = Math.max(position, end);
  }
  if (position < cut) {
    result += text.slice(position, cut);
  }
  return result;
}
