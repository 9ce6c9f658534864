import { HpackDecoder, HpackError, type HeaderField } from "./hpack-decoder.js";

/** The client connection preface that starts every HTTP/2 connection (RFC 9113 section 3.4). */
export const HTTP2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");

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
  /** Every chunk received, kept for the replay and joined only once the outcome is known. */
  private readonly received: Buffer[] = [];
  private receivedBytes = 0;
  /** Bytes of the preface checked so far. */
  private prefaceBytes = 0;
  /**
   * Received bytes after the last whole frame, joined only once they contain
   * the next frame's header or the whole frame. So a client that sends one
   * byte per packet causes a bounded amount of copying per byte.
   */
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  /** Pending bytes that the next frame needs before it can be read: its header, then the whole frame. */
  private neededBytes = FRAME_HEADER_BYTES;
  /** Offset in the received bytes of the first pending byte. */
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
    this.received.push(chunk);
    this.receivedBytes += chunk.length;
    const framed = this.skipPreface(chunk);
    if (framed === undefined) {
      return this.unreadable();
    }
    if (framed.length > 0) {
      this.pending.push(framed);
      this.pendingBytes += framed.length;
    }

    while (this.pendingBytes >= this.neededBytes) {
      const buffer = this.joinPending();
      const length = buffer.readUIntBE(0, 3);
      if (length > DEFAULT_MAX_FRAME_BYTES) {
        return this.unreadable();
      }
      const end = FRAME_HEADER_BYTES + length;
      if (end > buffer.length) {
        this.neededBytes = end;
        break;
      }
      const type = buffer[3]!;
      const flags = buffer[4]!;
      const streamId = buffer.readUInt32BE(5) & 0x7fff_ffff;
      const payload = buffer.subarray(FRAME_HEADER_BYTES, end);

      if (type === FRAME_SETTINGS && (flags & FLAG_ACK) !== 0 && this.ackOffset === undefined) {
        if (length !== 0 || streamId !== 0) {
          return this.unreadable();
        }
        this.ackOffset = this.offset;
      } else if (this.request === undefined && !this.readRequestFrame(type, flags, streamId, payload)) {
        return this.unreadable();
      }
      this.offset += end;
      this.pending = end < buffer.length ? [buffer.subarray(end)] : [];
      this.pendingBytes -= end;
      this.neededBytes = FRAME_HEADER_BYTES;
    }

    if (this.request === undefined && this.receivedBytes > this.limits.maxBufferedBytes) {
      this.request = null;
    }
    if (this.request === undefined || this.ackOffset === undefined) {
      if (this.receivedBytes > this.limits.maxBufferedBytes * 2) {
        return this.unreadable();
      }
      return undefined;
    }

    return { request: this.request ?? undefined, bytes: this.bytesWithoutAck() };
  }

  /** Checks the chunk's part of the client preface, and returns the bytes after it; undefined when they differ. */
  private skipPreface(chunk: Buffer): Buffer | undefined {
    if (this.prefaceBytes === HTTP2_PREFACE.length) {
      return chunk;
    }
    const length = Math.min(chunk.length, HTTP2_PREFACE.length - this.prefaceBytes);
    if (!chunk.subarray(0, length).equals(HTTP2_PREFACE.subarray(this.prefaceBytes, this.prefaceBytes + length))) {
      return undefined;
    }
    this.prefaceBytes += length;
    return chunk.subarray(length);
  }

  /** Joins the pending bytes into one buffer, which stays their only chunk. */
  private joinPending(): Buffer {
    if (this.pending.length > 1) {
      this.pending = [Buffer.concat(this.pending, this.pendingBytes)];
    }
    return this.pending[0]!;
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
    const bytes = this.received.length === 1 ? this.received[0]! : Buffer.concat(this.received, this.receivedBytes);
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
