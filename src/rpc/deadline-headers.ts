import type { IncomingHttpHeaders } from "node:http";

/** Maximum delay of Node's `setTimeout`. It fires a longer one after 1 ms, with a warning. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** A `grpc-timeout` value as gRPC defines it: up to 8 digits and a unit. */
const GRPC_TIMEOUT = /^(\d{1,8})([HMSmun])$/;

const GRPC_TIMEOUT_UNIT_MS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1_000, m: 1, u: 0.001, n: 0.000_001 };

/** The maximum `grpc-timeout` within {@link MAX_TIMER_MS}: 2,147,483 seconds, about 24.8 days. */
const MAX_GRPC_TIMEOUT = "2147483S";

/**
 * Caps the deadline headers of a request at {@link MAX_TIMER_MS}. The
 * service's Connect handler and connect-node pass the deadline to
 * `setTimeout`, so a longer one, which both protocols allow, would end the
 * call after 1 ms while its SMS request may already be on its way.
 */
export function capDeadlineHeaders(headers: IncomingHttpHeaders): void {
  const connectTimeout = headers["connect-timeout-ms"];
  if (typeof connectTimeout === "string" && /^\d{1,10}$/.test(connectTimeout) && Number(connectTimeout) > MAX_TIMER_MS) {
    headers["connect-timeout-ms"] = String(MAX_TIMER_MS);
  }

  const grpcTimeout = headers["grpc-timeout"];
  const match = typeof grpcTimeout === "string" ? GRPC_TIMEOUT.exec(grpcTimeout) : null;
  if (match !== null && Number(match[1]) * GRPC_TIMEOUT_UNIT_MS[match[2]!]! > MAX_TIMER_MS) {
    headers["grpc-timeout"] = MAX_GRPC_TIMEOUT;
  }
}
