import type { DescMethod, DescService } from "@bufbuild/protobuf";
import type { UnaryHandler } from "./call-context.js";
import type { ServiceBinding } from "./connect-routes.js";

/** One method of a bound service with its handler, as every server adapter registers it. */
export interface UnaryMethod {
  service: DescService;
  method: DescMethod;
  /** Full procedure name, for example `smsgateway.v1.SmsService/SendSms`. */
  procedure: string;
  handler: UnaryHandler<unknown, unknown>;
}

/**
 * Lists every method of the bound services with its handler. Fails at
 * start-up when a method has no handler or is not unary.
 */
export function unaryMethods(bindings: readonly ServiceBinding[]): UnaryMethod[] {
  return bindings.flatMap(({ desc, handlers }) =>
    desc.methods.map((method) => {
      const handler = handlers[method.localName] as UnaryHandler<unknown, unknown> | undefined;
      if (handler === undefined || method.methodKind !== "unary") {
        throw new Error(`no unary handler for ${desc.typeName}/${method.name}`);
      }
      return { service: desc, method, procedure: `${desc.typeName}/${method.name}`, handler };
    }),
  );
}
