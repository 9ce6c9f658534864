/**
 * A stand-in SMS gateway for trying the service out: it listens on loopback,
 * prints every message it receives, and replies with an id and a date at
 * `data.id` and `data.date`, like a real gateway's REST endpoint would.
 *
 * POST /auth returns a token at `data.token`, for trying token
 * authentication (`auth_url` http://127.0.0.1:9090/auth, `token_key` token).
 * Any other POST is taken as one SMS.
 */
import { randomUUID } from "node:crypto";
import http from "node:http";
import { isIPv6, type AddressInfo } from "node:net";

const MAX_BODY_BYTES = 1024 * 1024;

export interface LocalGatewayOptions {
  host: string;
  port: number;
}

/** Starts the stand-in gateway; `onMessage` receives each SMS request. */
export async function startLocalGateway(
  options: LocalGatewayOptions,
  onMessage: (line: string) => void,
): Promise<{ server: http.Server; url: string }> {
  let count = 0;
  const server = http.createServer((request, response) => {
    const chunks: Buffer[] = [];
    let size = 0;
    request.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_BODY_BYTES) {
        chunks.push(chunk);
      }
    });
    request.on("end", () => {
      const reply = (status: number, body: unknown) => {
        response.writeHead(status, { "content-type": "application/json" });
        response.end(JSON.stringify(body));
      };
      if (request.method !== "POST") {
        reply(405, { error: "use POST" });
        return;
      }
      if (request.url === "/auth") {
        reply(200, { data: { token: `tok_${randomUUID()}`, expires_in: 3600 } });
        return;
      }

      let message: Record<string, unknown>;
      try {
        message = JSON.parse(Buffer.concat(chunks).toString("utf8")) as Record<string, unknown>;
      } catch {
        reply(400, { error: "body is not JSON" });
        return;
      }
      if (typeof message !== "object" || message === null || typeof message.to !== "string" || typeof message.content !== "string") {
        reply(400, { error: 'expected a JSON object with the strings "to" and "content", as smsgateway sends them' });
        return;
      }

      count++;
      const id = `msg_${count}_${randomUUID().slice(0, 8)}`;
      const headers = Object.keys(request.headers).filter((name) => !["host", "connection", "content-length", "content-type"].includes(name));
      onMessage(
        `SMS #${count} to ${String(message.to)} from ${String(message.sender)}: ${JSON.stringify(message.content)}` +
          ` (path ${request.url}, headers: ${headers.join(", ") || "none"}) -> id ${id}`,
      );
      reply(200, { data: { id, date: new Date().toISOString() } });
    });
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", (error) => reject(listenError(error, options)));
    server.listen(options.port, options.host, () => resolve());
  });
  const address = server.address() as AddressInfo;
  return { server, url: `http://${urlHost(options.host)}:${address.port}` };
}

/**
 * Returns the error of a failed listen, reworded to name the fix when the
 * port is taken or the address is not on this machine.
 */
function listenError(error: NodeJS.ErrnoException, options: LocalGatewayOptions): Error {
  if (error.code === "EADDRINUSE") {
    return new Error(
      `another process already listens on ${options.host} port ${options.port} (EADDRINUSE); stop it, ` +
        "or pick a free port with --port N or GATEWAY_PORT (0 picks one) and use that port in the integration's URLs",
      { cause: error },
    );
  }
  if (error.code === "EADDRNOTAVAIL") {
    return new Error(`${options.host} is not an address of this machine (EADDRNOTAVAIL); use --host 127.0.0.1, or --host ::1`, {
      cause: error,
    });
  }
  return error;
}

/** Returns `host` as a URL writes it: an IPv6 address in brackets, as in `http://[::1]:9090`. */
export function urlHost(host: string): string {
  return isIPv6(host) ? `[${host}]` : host;
}
