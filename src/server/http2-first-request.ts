import { HpackDecoder, HpackError, type HeaderField } from "./hpack-decoder.js";

/** The client connection preface that starts every HTTP/2 connection (RFC 9113 section 3.4). */
export const HTTP2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");

/**
 * Compares the first bytes of a connection with {@link HTTP2_PREFACE}:
 * "http2" when they start with the whole preface, "partial" while they are
 * a shorter start of it, and "other" when they differ from it.
 */
export function matchHttp2Preface(received: Buffer): "http2" | "partial" | "other" {
  const compared = Math.min(received.length, HTTP2_PREFACE.length);
  if (!received.subarray(0, compared).equals(HTTP2_PREFACE.subarray(0, compared))) {
    return "other";
  }
  return compared < HTTP2_PREFACE.length ? "partial" : "http2";
}

/**
 * A SETTINGS frame without parameters: a server connection preface that
 * keeps every setting at its default (RFC 9113 section 3.4).
 */
export const EMPTY_SETTINGS_FRAME = Buffer.from([0, 0, 0, 0x4, 0, 0, 0, 0, 0]);

const FRAME_HEADER_BYTES = 9;
/** SETTINGS_MAX_FRAME_SIZE until the server announces more, which it has not yet done. */
const DEFAULT_MAX_FRAME_BYTES = 16_384;

const FRAME_HEADERS = 0x1;
const FRAME_PRIORITY = 0x2;
const FRAME_SETTINGS = 0x4;
const FRAME_WINDOW_UPDATE = 0x8;
const FRAME_CONTINUATION = 0x9;
/** Frame types of RFC 9113; higher types are extensions, which a receiver ignores. */
const LAST_CORE_FRAME_TYPE = 0x9;

const FLAG_ACK = 0x1;
const FLAG_END_HEADERS = 0x4;
const FLAG_PADDED = 0x8;
const FLAG_PRIORITY = 0x20;

/** The headers of a connection's first request that choose its server. */
export interface FirstRequest {
  /** `:path`, for example `/smsgateway.v1.SmsService/SendSms`. */
  path: string;
  /** `content-type`, empty when the request has none. */
  contentType: string;
}

/** The first request of a connection, and the bytes to replay to the server that takes it. */
export interface FirstRequestOutcome {
  /**
   * The first request's headers, or undefined when they cannot be read: the
   * framing or the header block is malformed, a frame that may need a reply
   * (such as PING) came before the request, or the client sent too many bytes.
   */
  request: FirstRequest | undefined;
  /**
   * Every byte received so far, without the client's acknowledgement of the
   * SETTINGS frame that the reader's owner sent. Replaying them to an HTTP/2
   * server that sends its own SETTINGS keeps both peers' views consistent.
   */
  bytes: Buffer;
}

/** Limits of {@link FirstRequestParser}. */
export interface FirstRequestLimits {
  /** Bytes buffered while waiting; beyond this the request counts as unreadable. */
  maxBufferedBytes: number;
}

const DEFAULT_LIMITS: FirstRequestLimits = { maxBufferedBytes: 256 * 1024 };

/**
 * Reads the frames of an HTTP/2 connection, as sent by the client, until
 * both its first request's header block and its acknowledgement of the
 * server's first SETTINGS frame have arrived.
 *
 * The owner sends {@link EMPTY_SETTINGS_FRAME} as the server preface,
 * because some clients (grpc-js among them) send no request before they
 * see the server's SETTINGS. The HTTP/2 server that finally takes the
 * connection sends its own SETTINGS, so the client's first acknowledgement,
 * which acknowledges the empty frame, is removed from the bytes it gets.
 */
export class FirstRequestParser {
  /**
   * Every byte received, kept for the replay. The buffer grows by doubling,
   * so each byte is copied a bounded number of times however the client
   * splits its bytes, and no chunk of the socket is kept.
   */
  private buffer: Buffer = Buffer.alloc(0);
  /** Bytes of `buffer` in use. */
  private length = 0;
  /** Offset in `buffer` of the next frame. */
  private offset = HTTP2_PREFACE.length;
  private ackOffset: number | undefined;
  /** Undefined while pending; null once the request is known to be unreadable. */
  private request: FirstRequest | null | undefined;
  private headerStreamId = 0;
  private headerFragments: Buffer[] = [];

  constructor(private readonly limits: FirstRequestLimits = DEFAULT_LIMITS) {}

  /**
   * Adds received bytes, which start with the client preface, and returns the
   * outcome once it is known, else undefined.
   */
  push(chunk: Buffer): FirstRequestOutcome | undefined {
    const prefaceStart = this.length;
    this.append(chunk);
    const prefaceEnd = Math.min(this.length, HTTP2_PREFACE.length);
    if (prefaceStart < prefaceEnd && !this.buffer.subarray(prefaceStart, prefaceEnd).equals(HTTP2_PREFACE.subarray(prefaceStart, prefaceEnd))) {
      return this.unreadable();
    }

    while (this.length - this.offset >= FRAME_HEADER_BYTES) {
      const length = this.buffer.readUIntBE(this.offset, 3);
      if (length > DEFAULT_MAX_FRAME_BYTES) {
        return this.unreadable();
      }
      const end = this.offset + FRAME_HEADER_BYTES + length;
      if (end > this.length) {
        break;
      }
      const type = this.buffer[this.offset + 3]!;
      const flags = this.buffer[this.offset + 4]!;
      const streamId = this.buffer.readUInt32BE(this.offset + 5) & 0x7fff_ffff;
      // A grown buffer replaces this one, but bytes already received are never written again.
      const payload = this.buffer.subarray(this.offset + FRAME_HEADER_BYTES, end);

      if (type === FRAME_SETTINGS && (flags & FLAG_ACK) !== 0 && this.ackOffset === undefined) {
        if (length !== 0 || streamId !== 0) {
          return this.unreadable();
        }
        this.ackOffset = this.offset;
      } else if (this.request === undefined && !this.readRequestFrame(type, flags, streamId, payload)) {
        return this.unreadable();
      }
      this.offset = end;
    }

    if (this.request === undefined && this.length > this.limits.maxBufferedBytes) {
      this.request = null;
    }
    if (this.request === undefined || this.ackOffset === undefined) {
      if (this.length > this.limits.maxBufferedBytes * 2) {
        return this.unreadable();
      }
      return undefined;
    }

    return { request: this.request ?? undefined, bytes: this.bytesWithoutAck() };
  }

  /** Copies a chunk to the end of the buffer, which doubles in size when it is full. */
  private append(chunk: Buffer): void {
    const needed = this.length + chunk.length;
    if (needed > this.buffer.length) {
      const grown = Buffer.allocUnsafe(Math.max(needed, this.buffer.length * 2, 1024));
      this.buffer.copy(grown, 0, 0, this.length);
      this.buffer = grown;
    }
    chunk.copy(this.buffer, this.length);
    this.length = needed;
  }

  /** Whether the client has acknowledged the server's SETTINGS frame. */
  get acknowledged(): boolean {
    return this.ackOffset !== undefined;
  }

  /**
   * Takes one frame while the first request is pending. Returns false when
   * the framing is malformed, so the bytes go unchanged to a server that
   * reports the protocol error.
   */
  private readRequestFrame(type: number, flags: number, streamId: number, payload: Buffer): boolean {
    if (this.headerStreamId !== 0) {
      if (type !== FRAME_CONTINUATION || streamId !== this.headerStreamId) {
        return false;
      }
      this.headerFragments.push(payload);
      if ((flags & FLAG_END_HEADERS) !== 0) {
        this.request = decodeRequest(Buffer.concat(this.headerFragments));
      }
      return true;
    }

    switch (type) {
      case FRAME_HEADERS: {
        if (streamId === 0 || streamId % 2 === 0) {
          return false;
        }
        const fragment = headerFragment(flags, payload);
        if (fragment === undefined) {
          return false;
        }
        if ((flags & FLAG_END_HEADERS) !== 0) {
          this.request = decodeRequest(fragment);
        } else {
          this.headerStreamId = streamId;
          this.headerFragments = [fragment];
        }
        return true;
      }
      case FRAME_SETTINGS:
      case FRAME_WINDOW_UPDATE:
      case FRAME_PRIORITY:
        return true;
      default:
        // A frame that may need a reply (PING) or that ends the connection
        // leaves the choice to the default server; extension frames are ignored.
        if (type <= LAST_CORE_FRAME_TYPE) {
          this.request = null;
        }
        return true;
    }
  }

  private unreadable(): FirstRequestOutcome {
    return { request: undefined, bytes: this.bytesWithoutAck() };
  }

  private bytesWithoutAck(): Buffer {
    const bytes = this.buffer.subarray(0, this.length);
    const ack = this.ackOffset;
    if (ack === undefined) {
      return bytes;
    }
    return Buffer.concat([bytes.subarray(0, ack), bytes.subarray(ack + FRAME_HEADER_BYTES)]);
  }
}

/** Returns the header block fragment of a HEADERS payload, or undefined when padding or priority overrun it. */
function headerFragment(flags: number, payload: Buffer): Buffer | undefined {
  let start = 0;
  let end = payload.length;
  if ((flags & FLAG_PADDED) !== 0) {
    if (payload.length < 1) {
      return undefined;
    }
    start = 1;
    end -= payload[0]!;
  }
  if ((flags & FLAG_PRIORITY) !== 0) {
    start += 5;
  }
  return start <= end ? payload.subarray(start, end) : undefined;
}

/** Decodes the first header block; null when it is malformed or has no `:path`. */
function decodeRequest(block: Buffer): FirstRequest | null {
  let fields: HeaderField[];
  try {
    fields = new HpackDecoder().decode(block);
  } catch (error) {
    if (error instanceof HpackError) {
      return null;
    }
    throw error;
  }

  const path = fields.find(([name]) => name === ":path")?.[1];
  const contentType = fields.find(([name]) => name === "content-type")?.[1] ?? "";
  return path === undefined ? null : { path, contentType };
}
