import net from "node:net";

/**
 * Connects, writes `bytes` and waits up to `waitMs` for the server to close
 * the connection. Resolves with what the server sent and whether it closed.
 */
export async function holdOpen(port: number, bytes: string | Buffer, waitMs: number): Promise<{ closed: boolean; received: string }> {
  const socket = net.connect(port, "127.0.0.1");
  socket.on("error", () => {});
  let received = "";
  socket.on("data", (chunk: Buffer) => (received += chunk.toString("latin1")));
  await new Promise<void>((resolve) => socket.once("connect", () => resolve()));
  socket.write(bytes);

  const closed = await new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), waitMs);
    socket.once("close", () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
  socket.destroy();
  return { closed, received };
}
