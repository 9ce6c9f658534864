import type net from "node:net";
import { EMPTY_SETTINGS_FRAME, FirstRequestParser, type FirstRequest } from "./http2-first-request.js";

/**
 * How long a client has to acknowledge the server's SETTINGS frame, in
 * milliseconds. Clients acknowledge as soon as the frame arrives, so this
 * only ends connections from peers that do not speak HTTP/2.
 */
export const SETTINGS_ACK_TIMEOUT_MS = 10_000;

/**
 * How long a client has to send its first request's headers, in
 * milliseconds, when the caller gives no other time. It is the default of
 * the FIRST_REQUEST_TIMEOUT_MS setting and Node's default `headersTimeout`
 * for HTTP/1.1. Clients normally send their first request right after
 * connecting, so mostly idle or hostile connections reach it. A client that
 * connects ahead of its first call reconnects after the GOAWAY.
 */
export const FIRST_REQUEST_TIMEOUT_MS = 60_000;

/** GOAWAY with last stream 0 and error SETTINGS_TIMEOUT (RFC 9113 sections 6.8 and 7). */
const GOAWAY_SETTINGS_TIMEOUT = Buffer.from([0, 0, 8, 0x7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x4]);

/** GOAWAY with last stream 0 and error NO_ERROR: no stream was processed, so the client may retry on a new connection. */
const GOAWAY_NO_ERROR = Buffer.from([0, 0, 8, 0x7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);

/**
 * Holds an HTTP/2 connection until its first request's headers arrive. It
 * then puts every byte back on the socket and calls `handover` with those
 * headers, or with undefined when they could not be read. `handover` passes
 * the socket to the HTTP/2 server of its choice.
 *
 * The function sends the server preface itself: an empty SETTINGS frame,
 * whose acknowledgement it removes from the bytes it puts back. A
 * connection without a request after `firstRequestTimeoutMs` gets a GOAWAY
 * and is closed, so idle connections cannot hold sockets for good.
 *
 * @param received Bytes already read from the socket, starting with the
 *   client preface; empty when none were read.
 * @param settingsAckTimeoutMs Time the client has to acknowledge the SETTINGS frame.
 * @param firstRequestTimeoutMs Time the client has to send its first request's headers.
 */
export function awaitFirstRequest(
  socket: net.Socket,
  received: Buffer,
  handover: (request: FirstRequest | undefined) => void,
  settingsAckTimeoutMs = SETTINGS_ACK_TIMEOUT_MS,
  firstRequestTimeoutMs = FIRST_REQUEST_TIMEOUT_MS,
): void {
  const parser = new FirstRequestParser();
  // A GOAWAY with last stream 0 promises the client that no request was processed,
  // so bytes that arrive after it must not reach either server.
  let goneAway = false;
  const goAway = (frame: Buffer) => {
    goneAway = true;
    clearTimeout(timer);
    clearTimeout(requestTimer);
    socket.off("data", onData);
    socket.end(frame);
    socket.destroySoon();
  };
  const timer = setTimeout(() => {
    if (!parser.acknowledged) {
      goAway(GOAWAY_SETTINGS_TIMEOUT);
    }
  }, settingsAckTimeoutMs);
  timer.unref();
  const requestTimer = setTimeout(() => goAway(GOAWAY_NO_ERROR), firstRequestTimeoutMs);
  requestTimer.unref();

  const onData = (chunk: Buffer) => {
    if (goneAway) {
      return;
    }
    const outcome = parser.push(chunk);
    if (outcome === undefined) {
      return;
    }
    clearTimeout(timer);
    clearTimeout(requestTimer);
    socket.off("data", onData);
    socket.pause();
    socket.unshift(outcome.bytes);
    handover(outcome.request);
  };

  socket.write(EMPTY_SETTINGS_FRAME);
  socket.on("data", onData);
  socket.once("close", () => {
    clearTimeout(timer);
    clearTimeout(requestTimer);
  });
  if (received.length > 0) {
    onData(received);
  }
}
