import { StringDecoder } from "node:string_decoder";

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
 * Lists the forms in which a gateway may echo each secret: as is, escaped
 * inside a JSON string, percent-encoded in a URL, escaped for HTML, and in
 * base64 and base64url without padding, which covers the secret
 * base64-encoded on its own. Empty secrets are skipped.
 *
 * The forms are in ASCII lower case, and the functions below compare them
 * with text whose ASCII letters they fold the same way, so an echo in upper
 * or mixed case matches too. A base64 form then also matches text that
 * differs from it only in case, which redacts more than needed, never less.
 *
 * NOTE: a secret encoded together with other text (such as `user:key` in a
 * Basic authorization value) is not recognised.
 */
export function secretForms(secrets: readonly string[]): string[] {
  const forms = new Set<string>();
  for (const secret of secrets) {
    if (secret === "") {
      continue;
    }
    const bytes = Buffer.from(secret);
    const encoded = [
      secret,
      JSON.stringify(secret).slice(1, -1),
      encodeURIComponent(secret),
      escapeHtml(secret),
      bytes.toString("base64").replace(/=+$/, ""),
      bytes.toString("base64url"),
    ];
    for (const form of encoded) {
      forms.add(foldAsciiCase(form));
    }
  }
  return [...forms];
}

/** Returns `text` with its ASCII letters in lower case; other characters, and so the length, stay. */
function foldAsciiCase(text: string): string {
  return /[A-Z]/.test(text) ? text.replace(/[A-Z]+/g, (letters) => letters.toLowerCase()) : text;
}

/** Escapes the characters that HTML escapes in text and attribute values. */
function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (character) => HTML_ENTITIES[character]!);
}

const HTML_ENTITIES: Record<string, string> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

/**
 * Returns the number of body bytes to read for an excerpt: 1 KiB plus the
 * longest secret form.
 *
 * The extra bytes let `buildBodyExcerpt` see the whole of a secret that
 * starts inside the first 1 KiB and ends after it, so no part of it leaks.
 */
export function excerptReadBytes(forms: readonly string[]): number {
  let longest = 0;
  for (const form of forms) {
    longest = Math.max(longest, Buffer.byteLength(form));
  }
  return EXCERPT_BYTES + longest;
}

/** Replaces every occurrence of each secret form in a text with `[REDACTED]`. */
export function redactSecrets(text: string, forms: readonly string[]): string {
  return redactUpTo(text, forms, text.length);
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
  const kept = text.slice(0, text.length - secretStartLength(text, forms));
  return buildBodyExcerpt(Buffer.from(kept, "utf8"), false, forms);
}

/** Returns the length of the longest end of `text` that is the start, but not the whole, of a secret form. */
function secretStartLength(text: string, forms: readonly string[]): number {
  const folded = foldAsciiCase(text);
  let longest = 0;
  for (const form of forms) {
    for (let length = Math.min(form.length - 1, folded.length); length > longest; length--) {
      if (folded.endsWith(form.slice(0, length))) {
        longest = length;
        break;
      }
    }
  }
  return longest;
}

/**
 * Returns `text` up to the index `cut`, with each secret form replaced. A
 * secret that starts before the cut is replaced even when it ends after it.
 */
function redactUpTo(text: string, forms: readonly string[], cut: number): string {
  const folded = foldAsciiCase(text);
  const ranges: Array<[number, number]> = [];
  for (const form of forms) {
    let start = folded.indexOf(form);
    while (start !== -1 && start < cut) {
      ranges.push([start, start + form.length]);
      start = folded.indexOf(form, start + 1);
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
