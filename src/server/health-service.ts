import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type ConnectRouter, type HandlerContext } from "@connectrpc/connect";
import {
  Health,
  HealthCheckResponse_ServingStatus as ServingStatus,
  HealthCheckResponseSchema,
  HealthListResponseSchema,
  type HealthCheckRequest,
  type HealthCheckResponse,
} from "../../gen/grpc/health/v1/health_pb.js";

/** `Health.List` fails with RESOURCE_EXHAUSTED past this many services, as the protocol sets. */
const MAX_LISTED_SERVICES = 100;

/**
 * The serving status of the server (the empty service name) and of each of
 * its services, with a way to wait for changes.
 *
 * Every service starts SERVING. `shutdown` turns them all NOT_SERVING and
 * then ends every watch, so watchers see the change before their stream ends.
 */
export class HealthStatusBoard {
  private readonly statuses = new Map<string, ServingStatus>();
  private readonly waiters = new Set<() => void>();
  private closed = false;

  constructor(serviceNames: readonly string[]) {
    for (const name of ["", ...serviceNames]) {
      this.statuses.set(name, ServingStatus.SERVING);
    }
  }

  /** Returns the status of a service, or undefined for a name that is not known. */
  status(service: string): ServingStatus | undefined {
    return this.statuses.get(service);
  }

  /** Returns every known service name with its status; the empty name is the server. */
  entries(): [string, ServingStatus][] {
    return [...this.statuses];
  }

  /** Sets the status of a service, adding it when it is new, and wakes the watchers. */
  set(service: string, status: ServingStatus): void {
    if (this.closed || this.statuses.get(service) === status) {
      return;
    }
    this.statuses.set(service, status);
    this.wake();
  }

  /** Turns every service NOT_SERVING for good and ends every watch after it has seen that. */
  shutdown(): void {
    for (const service of this.statuses.keys()) {
      this.statuses.set(service, ServingStatus.NOT_SERVING);
    }
    this.closed = true;
    this.wake();
  }

  /**
   * Yields the status of a service now and then after each change, with
   * SERVICE_UNKNOWN while the name is not known. Returns when `signal`
   * aborts or after the status that `shutdown` set.
   */
  async *watch(service: string, signal: AbortSignal): AsyncGenerator<ServingStatus> {
    let sent: ServingStatus | undefined;
    while (!signal.aborted) {
      const current = this.statuses.get(service) ?? ServingStatus.SERVICE_UNKNOWN;
      if (current !== sent) {
        sent = current;
        yield current;
      }
      if (this.closed) {
        return;
      }
      await this.nextChange(signal);
    }
  }

  /** Resolves on the next change or when `signal` aborts, whichever comes first. */
  private nextChange(signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        this.waiters.delete(done);
        signal.removeEventListener("abort", done);
        resolve();
      };
      this.waiters.add(done);
      signal.addEventListener("abort", done, { once: true });
    });
  }

  private wake(): void {
    for (const waiter of [...this.waiters]) {
      waiter();
    }
  }
}

/**
 * Registers `grpc.health.v1.Health` on a Connect router, serving the
 * board's statuses: Check and List for probes, Watch for clients that follow
 * changes.
 */
export function registerHealthService(router: ConnectRouter, board: HealthStatusBoard): void {
  router.service(Health, {
    check(request: HealthCheckRequest): HealthCheckResponse {
      const status = board.status(request.service);
      if (status === undefined) {
        const known = board
          .entries()
          .map(([name]) => name)
          .filter((name) => name !== "");
        throw new ConnectError(
          `unknown service "${request.service}"; leave it empty for the whole server, or name one of ${known.join(", ")}`,
          Code.NotFound,
        );
      }
      return create(HealthCheckResponseSchema, { status });
    },

    list() {
      const entries = board.entries();
      if (entries.length > MAX_LISTED_SERVICES) {
        throw new ConnectError(`more than ${MAX_LISTED_SERVICES} services; use Check per service`, Code.ResourceExhausted);
      }
      const statuses = Object.fromEntries(entries.map(([name, status]) => [name, create(HealthCheckResponseSchema, { status })]));
      return create(HealthListResponseSchema, { statuses });
    },

    async *watch(request: HealthCheckRequest, context: HandlerContext) {
      for await (const status of board.watch(request.service, context.signal)) {
        yield create(HealthCheckResponseSchema, { status });
      }
      if (!context.signal.aborted) {
        // The board ended the watch because the server is shutting down. The
        // protocol tells clients to call again later, which reaches another instance.
        throw new ConnectError("the server is shutting down", Code.Unavailable);
      }
    },
  });
}
