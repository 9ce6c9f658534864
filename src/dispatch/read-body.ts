import type { Readable } from "node:stream";

import type { Dispatcher } from "undici";

import { copyWith } from "../copy-with.js";

/** The start of a reply body. */
export interface BodyStart {
  bytes: Buffer;
  /** True when `bytes` is the whole body. */
  complete: boolean;
}

/**
 * Reads a reply body up to `limitBytes` and destroys the stream as soon as
 * the body turns out to be longer.
 *
 * A gateway can send a reply of any size, so a read must stop at a bound
 * instead of buffering it all.
 *
 * @throws the stream's error, for example when the connection resets or the
 *   request is aborted while the body arrives.
 */
export async function readBodyStart(body: Readable, limitBytes: number): Promise<BodyStart> {
  return collectBodyStart(body, limitBytes, []);
}

/** The start of a reply body, and whether its stream failed before the body ended. */
export interface ArrivedBodyStart extends BodyStart {
  /** True when the stream failed (reset, abort, timeout), so `bytes` is only what arrived before. */
  failed: boolean;
}

/**
 * Reads a reply body up to `limitBytes`, like `readBodyStart`, but returns
 * the bytes that arrived when the stream fails instead of throwing.
 *
 * The status of an error reply already decides the failure, so the start
 * of its body is worth keeping when the rest never comes: a gateway that
 * trickles its error body until the deadline still shows what it sent.
 */
export async function readArrivedBodyStart(body: Readable, limitBytes: number): Promise<ArrivedBodyStart> {
  const chunks: Buffer[] = [];
  try {
    return copyWith(await collectBodyStart(body, limitBytes, chunks), { failed: false });
  } catch {
    return { bytes: Buffer.concat(chunks), complete: false, failed: true };
  }
}

/** Reads `body` into `chunks` up to one byte past `limitBytes`, so a caller keeps what arrived when it throws. */
async function collectBodyStart(body: Readable, limitBytes: number, chunks: Buffer[]): Promise<BodyStart> {
  let length = 0;
  for await (const chunk of body) {
    const buffer = chunk as Buffer;
    const room = limitBytes + 1 - length;
    if (buffer.length >= room) {
      // Keep one byte past the limit, so that callers see the body is longer.
      chunks.push(buffer.subarray(0, room));
      discardBody(body);
      return { bytes: Buffer.concat(chunks), complete: false };
    }
    chunks.push(buffer);
    length += buffer.length;
  }
  return { bytes: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks), complete: true };
}

/**
 * Stops reading a body and closes its stream. undici emits an abort error
 * on a body destroyed before its end, and an `error` event without a
 * listener would end the process, so a listener takes it here.
 */
function discardBody(body: Readable): void {
  body.on("error", () => undefined);
  body.destroy();
}

/** Returns a body as UTF-8 text without a leading byte order mark, which JSON parsers reject. */
export function bodyText(body: BodyStart): string {
  return body.bytes.toString("utf8").replace(/^\uFEFF/, "");
}

/** A body that was not read: empty and marked incomplete. */
export const UNREAD_BODY: BodyStart = { bytes: Buffer.alloc(0), complete: false };

/**
 * Reads a reply body up to `limitBytes`, like `readBodyStart`, but skips a
 * body whose Content-Length already exceeds the limit and returns `UNREAD_BODY`.
 */
export async function readBodyUnlessTooLong(
  response: Dispatcher.ResponseData,
  limitBytes: number,
): Promise<BodyStart> {
  const contentLength = response.headers["content-length"];
  if (typeof contentLength !== "string" || !/^\d+$/.test(contentLength)) {
    return readBodyStart(response.body, limitBytes);
  }
  if (Number(contentLength) > limitBytes) {
    discardBody(response.body);
    return UNREAD_BODY;
  }
  // undici ends the body at Content-Length, so a body within the limit can be
  // read whole, which costs less than iterating the stream.
  const bytes = await response.body.bytes();
  return { bytes: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), complete: true };
}
