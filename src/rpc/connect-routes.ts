import type { DescService } from "@bufbuild/protobuf";
import type { ConnectRouter, HandlerContext, ServiceImpl } from "@connectrpc/connect";
import type { UnaryHandler } from "./call-context.js";
import type { CallPipeline, IncomingCall } from "./call-pipeline.js";
import { unaryMethods } from "./unary-methods.js";

/** A proto service and the handlers of its methods, keyed by method local name. */
export interface ServiceBinding {
  desc: DescService;
  handlers: Record<string, UnaryHandler<never, unknown>>;
}

/**
 * Returns the Connect routes of the given services, each method running
 * through the pipeline. Fails at start-up when a method has no handler.
 */
export function connectRoutes(bindings: readonly ServiceBinding[], pipeline: CallPipeline): (router: ConnectRouter) => void {
  return (router) => {
    const implementations = new Map<DescService, Record<string, (request: unknown, context: HandlerContext) => Promise<unknown>>>();
    for (const { service, method, procedure, handler } of unaryMethods(bindings)) {
      const implementation = implementations.get(service) ?? {};
      implementation[method.localName] = (request, context) => pipeline.runUnary(procedure, request, incomingCall(context), handler);
      implementations.set(service, implementation);
    }
    for (const [service, implementation] of implementations) {
      router.service(service, implementation as unknown as Partial<ServiceImpl<DescService>>);
    }
  };
}

function incomingCall(context: HandlerContext): IncomingCall {
  return {
    server: "connect-node",
    signal: context.signal,
    timeoutMs: () => context.timeoutMs(),
    requestHeader: (name) => context.requestHeader.get(name),
    setResponseHeader: (name, value) => context.responseHeader.set(name, value),
  };
}
