import type { IncomingMessage, ServerResponse } from "node:http";

import type { ScriptedReply } from "../helpers/scripted-gateway.js";

/** What a hostile reply saw of the client while it ran. */
export class ReplyProbe {
  /** Bytes the gateway's socket handed to the kernel, headers included, read when the connection closed. */
  bytesWritten = 0;
  /** Milliseconds from the request to the close of its connection, while the reply was still unsent or unfinished. */
  abortedAfterMs: number | undefined;
  /** Replies that were sent in full. */
  finished = 0;

  private readonly closedConnections: Promise<void>[] = [];

  /** Resolves when every connection a reply of this probe used has closed. */
  async allClosed(): Promise<void> {
    await Promise.all(this.closedConnections);
  }

  /** Starts watching one reply: when its connection closes early, and how much its socket wrote. */
  watch(response: ServerResponse, request: IncomingMessage): void {
    const startedAt = performance.now();
    const socket = request.socket;
    // Not events.once, which rejects when the client resets the connection.
    this.closedConnections.push(
      new Promise((resolve) => {
        socket.once("close", () => {
          this.bytesWritten += socket.bytesWritten;
          resolve();
        });
      }),
    );
    response.once("close", () => {
      if (response.writableFinished) {
        this.finished += 1;
      } else {
        this.abortedAfterMs ??= performance.now() - startedAt;
      }
    });
  }
}

/** Text of the trickled bodies, repeated for as long as the client reads. */
export const TRICKLED_TEXT = '{"error":"the gateway is very slow today","detail":"';

/**
 * Sends the status and headers at once, then the body one byte every
 * `intervalMs`, without end. No Content-Length is sent, so only the client
 * can end the reply.
 */
export function trickle(status: number, intervalMs: number, probe = new ReplyProbe()): ScriptedReply {
  return {
    respond(response, request) {
      probe.watch(response, request);
      response.writeHead(status, { "content-type": "application/json" });
      response.flushHeaders();
      let next = 0;
      const timer = setInterval(() => {
        response.write(TRICKLED_TEXT.charAt(next % TRICKLED_TEXT.length));
        next += 1;
      }, intervalMs);
      response.once("close", () => clearInterval(timer));
    },
  };
}

/**
 * Sends a 200 reply of `totalBytes`, in 64 KiB chunks written as fast as the
 * client reads them, until it is complete or the client closes the
 * connection. No chunk larger than 64 KiB exists at any time, so the
 * gateway does not allocate the body.
 */
export function flood(totalBytes: number, options: { announceLength: boolean }, probe = new ReplyProbe()): ScriptedReply {
  return {
    respond(response, request) {
      probe.watch(response, request);
      const headers: Record<string, string> = { "content-type": "application/json" };
      if (options.announceLength) {
        headers["content-length"] = String(totalBytes);
      }
      response.writeHead(200, headers);
      void writeChunks(response, totalBytes);
    },
  };
}

async function writeChunks(response: ServerResponse, totalBytes: number): Promise<void> {
  const chunk = Buffer.alloc(64 * 1024, "x");
  let left = totalBytes;
  while (left > 0 && !response.destroyed) {
    const piece = left >= chunk.length ? chunk : chunk.subarray(0, left);
    left -= piece.length;
    if (!response.write(piece)) {
      // Wait until the client reads, or stop when it closes the connection.
      await new Promise<void>((resolve) => {
        const done = () => {
          response.off("drain", done);
          response.off("close", done);
          resolve();
        };
        response.on("drain", done);
        response.on("close", done);
      });
    }
  }
  if (!response.destroyed) {
    response.end();
  }
}

/** Reads the request, then resets the connection (TCP RST) without a reply. */
export function resetAfterRequest(probe = new ReplyProbe()): ScriptedReply {
  return {
    respond(response, request) {
      probe.watch(response, request);
      request.socket.resetAndDestroy();
    },
  };
}

/** Replies 200 with `id` after `delayMs`, unless the client closes the connection first. */
export function replyAfter(delayMs: number, id: string, probe = new ReplyProbe()): ScriptedReply {
  return {
    respond(response, request) {
      probe.watch(response, request);
      const timer = setTimeout(() => {
        response.writeHead(200, { "content-type": "application/json" });
        response.end(JSON.stringify({ data: { id } }));
      }, delayMs);
      response.once("close", () => clearTimeout(timer));
    },
  };
}
