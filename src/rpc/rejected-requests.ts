import type { DescService } from "@bufbuild/protobuf";
import type { Code } from "@connectrpc/connect";
import type { Logger } from "pino";
import type { ServiceMetrics } from "../observability/metrics.js";
import { codeName, failureLogLevel } from "./call-pipeline.js";

/** Wire protocol of a request, as the log line of a rejected request names it. */
export type RpcProtocol = "grpc" | "grpc-web" | "connect";

/** A request that a server of the port rejected without starting a call. */
export interface RequestRejection {
  /** Request path, such as `/smsgateway.v1.SmsService/SendSMS`. */
  readonly path: string;
  readonly protocol: RpcProtocol;
  /** Server library that rejected the request: `grpc-js`, `connect-unary` or `connect-node`. */
  readonly server: string;
  /** Code of the reply, or the code Connect gives the same mistake when the reply is only an HTTP status. */
  readonly code: Code;
  /** HTTP status of a reply that carries no gRPC or Connect code, such as 415. */
  readonly httpStatus?: number;
  /** Problem with the request, in the words of the reply when the reply carries a message. */
  readonly reason: string;
  readonly requestId?: string;
  /** Caller's address and port, as {@link formatPeer} writes them. */
  readonly peer?: string;
}

/** Label value of a service or method that the port does not serve. */
export const UNKNOWN_LABEL = "unknown";

/** Maximum length of a logged path; a longer one is cut, because the caller chooses it. */
const MAX_LOGGED_PATH_CHARS = 200;

/** Maximum length of a logged reason; a longer one is cut. */
const MAX_LOGGED_REASON_CHARS = 500;

/**
 * Logs and counts the requests that a server of the port rejects before a
 * call starts, such as calls to unknown methods and requests in a content
 * type or HTTP method that the method does not take. Each gets one
 * `rpc rejected` line, at the level the pipeline uses for the same code,
 * and one count in `smsgateway_rpcs_total`.
 *
 * Such requests are not authenticated, so the line has no caller, and the
 * metric has the service and method only when the port serves them. Any other
 * path counts as `unknown`, so callers cannot create series without bound.
 */
export class RejectedRequests {
  /** Method names of each service the port serves, keyed by the service's full name. */
  private readonly methodsOf = new Map<string, ReadonlySet<string>>();

  constructor(
    private readonly logger: Logger,
    services: readonly DescService[],
    private readonly metrics?: ServiceMetrics,
  ) {
    for (const service of services) {
      this.methodsOf.set(service.typeName, new Set(service.methods.map((method) => method.name)));
    }
  }

  record(rejection: RequestRejection): void {
    const { service, method } = this.labelsOf(rejection.path);
    const code = codeName(rejection.code);
    this.metrics?.rpcRejected(service, method, code);

    const target = method === UNKNOWN_LABEL ? { path: clip(rejection.path, MAX_LOGGED_PATH_CHARS) } : { procedure: `${service}/${method}` };
    const fields = {
      ...target,
      protocol: rejection.protocol,
      server: rejection.server,
      code,
      ...(rejection.httpStatus === undefined ? {} : { httpStatus: rejection.httpStatus }),
      ...(rejection.requestId === undefined ? {} : { requestId: rejection.requestId }),
      ...(rejection.peer === undefined ? {} : { peer: rejection.peer }),
      error: clip(rejection.reason, MAX_LOGGED_REASON_CHARS),
    };
    this.logger[failureLogLevel(rejection.code)](fields, "rpc rejected");
  }

  /** Returns the metric labels of a path: its service and method when the port serves them, else `unknown`. */
  private labelsOf(path: string): { service: string; method: string } {
    const slash = path.lastIndexOf("/");
    const service = path.slice(1, slash);
    const methods = slash > 0 && path.startsWith("/") ? this.methodsOf.get(service) : undefined;
    if (methods === undefined) {
      return { service: UNKNOWN_LABEL, method: UNKNOWN_LABEL };
    }
    const method = path.slice(slash + 1);
    return { service, method: methods.has(method) ? method : UNKNOWN_LABEL };
  }
}

/**
 * Returns what to tell the caller of a method that a service does not have:
 * the method of the same name in other letter case, or the list of its
 * methods. Returns undefined when `methodsOf` does not have the path's service.
 */
export function unknownMethodMessage(path: string, methodsOf: ReadonlyMap<string, readonly string[]>): string | undefined {
  const slash = path.lastIndexOf("/");
  const service = path.slice(1, slash);
  const methods = methodsOf.get(service);
  if (slash <= 0 || methods === undefined) {
    return undefined;
  }
  const name = path.slice(slash + 1);
  const match = methods.find((method) => method.toLowerCase() === name.toLowerCase());
  const suggestion = match === undefined ? `its methods are ${methods.join(", ")}` : `did you mean ${match}?`;
  return `${service} has no method ${JSON.stringify(name)}; ${suggestion}`;
}

/** Matches a path of the form `/package.Service/Method`, the path of a gRPC or Connect call. */
const PROCEDURE_PATH = /^\/[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+\/[A-Za-z_]\w*$/;

/** Tests whether a path has the form of a gRPC or Connect call, `/package.Service/Method`. */
export function isProcedurePath(path: string): boolean {
  return PROCEDURE_PATH.test(path);
}

/** Returns the protocol that a request's content type names; anything other than gRPC or gRPC-Web counts as Connect. */
export function protocolOfContentType(contentType: string | null | undefined): RpcProtocol {
  if (contentType === null || contentType === undefined) {
    return "connect";
  }
  if (/^application\/grpc-web/i.test(contentType)) {
    return "grpc-web";
  }
  return /^application\/grpc/i.test(contentType) ? "grpc" : "connect";
}

/** Returns an address and port as `127.0.0.1:51234` or `[::1]:51234`, or undefined without an address. */
export function formatPeer(address: string | undefined, port: number | undefined): string | undefined {
  if (address === undefined) {
    return undefined;
  }
  const host = address.includes(":") ? `[${address}]` : address;
  return port === undefined ? host : `${host}:${port}`;
}

function clip(text: string, maxChars: number): string {
  return text.length <= maxChars ? text : `${text.slice(0, maxChars)}...`;
}
