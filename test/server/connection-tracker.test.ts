import http from "node:http";
import type net from "node:net";
import { afterEach, expect, test } from "vitest";
import { startServer, type RunningServer } from "../../src/server/one-port-server.js";
import { garbageCollector } from "../hostile/hostile-harness.js";

const servers: RunningServer[] = [];

/** Marks a watched object collected; kept at module level, because a collected registry calls nothing back. */
const collection = new FinalizationRegistry<{ collected: boolean }>((watch) => (watch.collected = true));

afterEach(async () => {
  for (const server of servers.splice(0)) {
    await server.close(0);
  }
});

/**
 * Sends an HTTP/1.1 request that the server never responds to, like a send that
 * waits for a slow gateway, and closes the connection once the server has
 * it, as a client does at its deadline. Resolves once the server's socket
 * has closed, with a flag that turns true when the socket is collected.
 * A FinalizationRegistry watches it because a WeakRef would keep its target
 * alive until Node clears the kept objects.
 */
async function abandonedServerSocket(): Promise<{ collected: boolean }> {
  let handled: ((socket: net.Socket) => void) | undefined;
  const handedOver = new Promise<net.Socket>((resolve) => (handled = resolve));
  const server = await startServer(
    (request) => {
      // Resolving once and dropping the resolver leaves the settled promise, which references the socket, unreachable.
      handled?.(request.socket as net.Socket);
      handled = undefined;
    },
    { host: "127.0.0.1", port: 0 },
  );
  servers.push(server);

  const client = http.request({ host: "127.0.0.1", port: server.port, method: "POST", path: "/", agent: false });
  client.on("error", () => {});
  client.end("{}");
  const socket = await handedOver;
  const closed = closeOf(socket);
  client.destroy();
  await closed;

  const watch = { collected: false };
  collection.register(socket, watch);
  return watch;
}

/** Resolves when `socket` closes; a function of its own, so that no closure of the caller references the socket. */
function closeOf(socket: net.Socket): Promise<void> {
  return new Promise((resolve) => socket.once("close", () => resolve()));
}

test("abandoned HTTP/1.1 connection is released", async () => {
  const watch = await abandonedServerSocket();
  const gc = garbageCollector();

  await expect
    .poll(
      () => {
        gc();
        return watch.collected;
      },
      { timeout: 5_000, message: "the server's socket stayed reachable after its client closed the connection" },
    )
    .toBe(true);
});
