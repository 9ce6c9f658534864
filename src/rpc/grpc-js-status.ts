import type { ConnectError } from "@connectrpc/connect";
import { setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import { Metadata, type ServerErrorResponse } from "@grpc/grpc-js";

/** Trailers that grpc-js writes itself from the status code and message. */
const STATUS_TRAILERS = new Set(["grpc-status", "grpc-message"]);

/**
 * Converts the ConnectError that the pipeline throws into the error a
 * grpc-js handler passes to its callback. It carries the trailers that
 * Connect's gRPC handler would send: the code, the message and the error's
 * metadata. When the error has details, `grpc-status-details-bin` carries
 * them too, as an encoded `google.rpc.Status`.
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

/** Returns the first value of a metadata key as text, a binary value as Latin-1, or null when the key is missing. */
export function metadataValue(metadata: Metadata, name: string): string | null {
  const [value] = metadata.get(name);
  if (value === undefined) {
    return null;
  }
  return typeof value === "string" ? value : value.toString("latin1");
}
