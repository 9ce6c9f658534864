import type { Readable } from "node:stream";

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
 * instead of buffering it all. A destroyed body also closes its connection,
 * because undici cannot reuse a connection with unread data on it.
 *
 * @throws the stream's error, for example when the connection resets or the
 *   request is aborted while the body arrives.
 */
export async function readBodyStart(body: Readable, limitBytes: number): Promise<BodyStart> {
  const chunks: Buffer[] = [];
  let length = 0;
  for await (const chunk of body) {
    const buffer = chunk as Buffer;
    const room = limitBytes + 1 - length;
    if (buffer.length >= room) {
      // Keep one byte past the limit, so that callers see the body is longer.
      chunks.push(buffer.subarray(0, room));
      body.destroy();
      return { bytes: Buffer.concat(chunks), complete: false };
    }
    chunks.push(buffer);
    length += buffer.length;
  }
  return { bytes: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks), complete: true };
}

/** Discards a reply body without reading it. */
export function discardBody(body: Readable): void {
  body.destroy();
}
