import type { ConnectError } from "@connectrpc/connect";
import { setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import { Metadata, type ServerErrorResponse } from "@grpc/grpc-js";

/** Trailers that grpc-js writes itself from the status code and message. */
const STATUS_TRAILERS = new Set(["grpc-status", "grpc-message"]);

/**
 * Converts the ConnectError that the pipeline throws into the error a
 * grpc-js handler passes to its callback, with the trailers Connect's gRPC
 * handler would send: the code, the message, the error's metadata, and
 * `grpc-status-details-bin` (an encoded `google.rpc.Status` with the typed
 * details) when the error has details.
 */
export function toGrpcJsError(error: ConnectError): ServerErrorResponse {
  const trailers = setTrailerStatus(new Headers(), error);
  const metadata = new Metadata();
  trailers.forEach((value, name) => {
    if (STATUS_TRAILERS.has(name)) {
      return;
    }
    if (name.endsWith("-bin")) {
      metadata.set(name, Buffer.from(value, "base64"));
    } else {
      metadata.set(name, value);
    }
  });

  return Object.assign(new Error(error.rawMessage), {
    code: error.code as number,
    details: error.rawMessage,
    metadata,
  });
}
