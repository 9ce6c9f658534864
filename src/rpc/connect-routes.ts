import { fromJsonString, type DescMessage, type DescMethod, type DescService, type JsonReadOptions, type JsonWriteOptions } from "@bufbuild/protobuf";
import type { ConnectRouter, HandlerContext, MethodImpl } from "@connectrpc/connect";
import type { UnaryHandler } from "./call-context.js";
import type { CallPipeline, IncomingCall } from "./call-pipeline.js";
import { locateJsonError } from "./json-error-path.js";
import { undecodableError, UndecodableRequest } from "./undecodable-request.js";
import { unaryMethods } from "./unary-methods.js";

/** A proto service and the handlers of its methods, keyed by method local name. */
export interface ServiceBinding {
  desc: DescService;
  handlers: Record<string, UnaryHandler<never, unknown>>;
}

/** The JSON options connect-node is given. */
export type JsonOptions = Partial<JsonReadOptions & JsonWriteOptions>;

/**
 * Returns the Connect routes of the given services, each method running
 * through the pipeline. Fails at start-up when a method has no handler.
 *
 * `jsonOptions` must be the ones connect-node is given. A JSON request that
 * does not decode, such as a Connect GET or a gRPC-Web call in JSON, then
 * fails with the same message as on the service's own Connect handler.
 */
export function connectRoutes(bindings: readonly ServiceBinding[], pipeline: CallPipeline, jsonOptions: JsonOptions = {}): (router: ConnectRouter) => void {
  return (router) => {
    for (const { method, procedure, handler } of unaryMethods(bindings)) {
      const implementation = (request: unknown, context: HandlerContext) => pipeline.runUnary(procedure, request, incomingCall(context), handler);
      router.rpc(method, implementation as MethodImpl<DescMethod>, { jsonOptions: checkedJsonOptions(method.input, jsonOptions) });
    }
  };
}

/**
 * Returns connect-node's JSON options with a text decoder that checks the
 * request. connect turns a JSON request's bytes into text with the
 * `textDecoder` of its JSON options, and then decodes the text. protobuf's
 * message for text that does not decode quotes the value that is wrong, which
 * may be a secret or a phone number, so this decoder decodes the text first
 * and throws the error of {@link undecodableError} instead.
 *
 * NOTE: connect then decodes the text again, so a JSON request through
 * connect-node (gRPC-Web, Connect GET) costs two decodes. The service's own
 * Connect handler, which takes Connect POST, decodes once.
 */
function checkedJsonOptions(input: DescMessage, jsonOptions: JsonOptions): JsonOptions {
  // connect ignores unknown JSON fields unless its options reject them, and so must the check.
  const readOptions = { ...jsonOptions, ignoreUnknownFields: jsonOptions.ignoreUnknownFields ?? true };
  const utf8 = new TextDecoder();
  const textDecoder = {
    decode(bytes?: Uint8Array): string {
      const text = utf8.decode(bytes);
      try {
        fromJsonString(input, text, readOptions);
      } catch (error) {
        throw undecodableError(new UndecodableRequest(error, locateJsonError(input, text, readOptions)));
      }
      return text;
    },
  };
  // The option is connect's, but its type for jsonOptions leaves it out.
  const options: JsonOptions & { textDecoder: typeof textDecoder } = { ...jsonOptions, textDecoder };
  return options;
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
