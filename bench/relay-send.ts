/**
 * The gateway call of the benchmark's reference relays: the same undici
 * POST that the service makes, over one pooled Agent, without the service's
 * validation, logging, error mapping or storage.
 */
import { Agent, request } from "undici";

const agent = new Agent({ connections: 128, keepAliveTimeout: 4_000, keepAliveMaxTimeout: 4_000 });

/** POSTs one SMS as JSON to the gateway and returns the message id of its reply. */
export async function relaySms(gatewayUrl: string, message: { to: string; content: string; sender?: string }): Promise<string> {
  const response = await request(gatewayUrl, {
    dispatcher: agent,
    method: "POST",
    headers: { "content-type": "application/json", "x-api-key": "bench-key-0123456789" },
    body: JSON.stringify({ to: message.to, content: message.content, sender: message.sender ?? "Bench" }),
  });
  const reply = (await response.body.json()) as { data?: { id?: unknown } };
  if (response.statusCode !== 200) {
    throw new Error(`gateway replied ${response.statusCode}`);
  }
  return String(reply.data?.id ?? "");
}

/** Prints the ready line that the benchmark runner waits for. */
export function announceReady(ports: Record<string, number>): void {
  process.stdout.write(`${JSON.stringify({ ready: true, ...ports })}\n`);
}
