import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, type ConnectRouter, type HandlerContext } from "@connectrpc/connect";
import {
  ServerReflection as ServerReflectionV1,
  ServerReflectionRequestSchema as RequestV1Schema,
  ServerReflectionResponseSchema as ResponseV1Schema,
  type ServerReflectionRequest,
  type ServerReflectionResponse,
} from "../../gen/grpc/reflection/v1/reflection_pb.js";
import {
  ServerReflection as ServerReflectionV1alpha,
  ServerReflectionRequestSchema as RequestV1alphaSchema,
  ServerReflectionResponseSchema as ResponseV1alphaSchema,
  type ServerReflectionRequest as ServerReflectionRequestV1alpha,
} from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";
import type { DescriptorIndex } from "./descriptor-index.js";

type MessageResponse = MessageInitShape<typeof ResponseV1Schema>["messageResponse"];

/**
 * Registers server reflection, `grpc.reflection.v1.ServerReflection` and the
 * older `grpc.reflection.v1alpha.ServerReflection`, on a Connect router.
 *
 * Each stream responds to its requests in order until the client closes it, or
 * until `stopping` aborts at shutdown. A question that cannot be answered
 * gets an `error_response` with a gRPC code, and the stream goes on.
 */
export function registerReflectionService(router: ConnectRouter, index: DescriptorIndex, stopping: AbortSignal): void {
  router.service(ServerReflectionV1, {
    async *serverReflectionInfo(requests: AsyncIterable<ServerReflectionRequest>, context: HandlerContext) {
      for await (const request of untilAborted(requests, stopping, context.signal)) {
        yield answer(index, request);
      }
      throwIfStopped(stopping);
    },
  });

  // Both versions have the same fields under the same numbers, so a v1alpha
  // message converts to v1 and back through its binary form.
  router.service(ServerReflectionV1alpha, {
    async *serverReflectionInfo(requests: AsyncIterable<ServerReflectionRequestV1alpha>, context: HandlerContext) {
      for await (const request of untilAborted(requests, stopping, context.signal)) {
        const asV1 = fromBinary(RequestV1Schema, toBinary(RequestV1alphaSchema, request));
        yield fromBinary(ResponseV1alphaSchema, toBinary(ResponseV1Schema, answer(index, asV1)));
      }
      throwIfStopped(stopping);
    },
  });
}

/** Ends a stream that shutdown cut short with UNAVAILABLE, so the client knows to call again elsewhere. */
function throwIfStopped(stopping: AbortSignal): void {
  if (stopping.aborted) {
    throw new ConnectError("the server is shutting down", Code.Unavailable);
  }
}

/** Builds the response to one reflection request. */
export function answer(index: DescriptorIndex, request: ServerReflectionRequest): ServerReflectionResponse {
  return create(ResponseV1Schema, {
    validHost: request.host,
    originalRequest: request,
    messageResponse: messageResponse(index, request.messageRequest),
  });
}

function messageResponse(index: DescriptorIndex, question: ServerReflectionRequest["messageRequest"]): MessageResponse {
  switch (question.case) {
    case "listServices":
      return {
        case: "listServicesResponse",
        value: { service: index.services.map((service) => ({ name: service.typeName })) },
      };

    case "fileByFilename":
      return files(index.fileByName(question.value), `file "${question.value}" not found`);

    case "fileContainingSymbol":
      return files(index.fileContainingSymbol(question.value), `symbol "${question.value}" not found`);

    case "fileContainingExtension": {
      const { containingType, extensionNumber } = question.value;
      if (!index.hasMessage(containingType)) {
        return notFound(`message type "${containingType}" not found`);
      }
      return files(
        index.fileContainingExtension(containingType, extensionNumber),
        `message type "${containingType}" has no extension with field number ${extensionNumber}`,
      );
    }

    case "allExtensionNumbersOfType":
      if (!index.hasMessage(question.value)) {
        return notFound(`message type "${question.value}" not found`);
      }
      return {
        case: "allExtensionNumbersResponse",
        value: { baseTypeName: question.value, extensionNumber: index.extensionNumbers(question.value) },
      };

    default:
      return {
        case: "errorResponse",
        value: {
          errorCode: Code.InvalidArgument,
          errorMessage: "empty request: set one of list_services, file_by_filename, file_containing_symbol, file_containing_extension or all_extension_numbers_of_type",
        },
      };
  }
}

function files(serialized: Uint8Array[] | undefined, notFoundMessage: string): MessageResponse {
  if (serialized === undefined) {
    return notFound(notFoundMessage);
  }
  return { case: "fileDescriptorResponse", value: { fileDescriptorProto: serialized } };
}

function notFound(message: string): MessageResponse {
  return { case: "errorResponse", value: { errorCode: Code.NotFound, errorMessage: message } };
}

/**
 * Yields from `source` until it ends or either signal aborts. A pending read
 * is abandoned on abort, so a client that keeps its stream open does not
 * hold the server open at shutdown.
 */
async function* untilAborted<T>(source: AsyncIterable<T>, ...signals: AbortSignal[]): AsyncGenerator<T> {
  const iterator = source[Symbol.asyncIterator]();
  let onAbort = () => {};
  const aborted = new Promise<IteratorReturnResult<undefined>>((resolve) => {
    onAbort = () => resolve({ done: true, value: undefined });
  });
  for (const signal of signals) {
    signal.addEventListener("abort", onAbort, { once: true });
  }

  try {
    while (!signals.some((signal) => signal.aborted)) {
      const next = await Promise.race([iterator.next(), aborted]);
      if (next.done === true) {
        return;
      }
      yield next.value;
    }
  } finally {
    for (const signal of signals) {
      signal.removeEventListener("abort", onAbort);
    }
  }
}
