import type { JsonWriteOptions } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { createAsyncIterable, encodeEnvelope, type Compression, type UniversalServerResponse } from "@connectrpc/connect/protocol";
import { codeFromHttpStatus, codeToHttpStatus, contentTypeUnaryJson, errorFromJsonBytes, errorToJsonBytes } from "@connectrpc/connect/protocol-connect";
import { findTrailerError, setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import { trailerFlag, trailerParse, trailerSerialize } from "@connectrpc/connect/protocol-grpc-web";
import { compressionBrotli, compressionGzip } from "@connectrpc/connect-node";
import type { RpcProtocol } from "./rejected-requests.js";

// connect-node fails some unary calls before the implementation runs. These
// functions read the error from such a reply and write another error in its
// place, in each protocol of a unary call. They follow the
// replies of @connectrpc/connect 2.1 and use its protocol functions.

/** Envelope flag of a compressed message, in gRPC-Web and Connect streams alike. */
const COMPRESSED_FLAG = 0b1;

/** The largest error body read, well above the few hundred bytes connect writes. */
const MAX_ERROR_BYTES = 64 * 1024;

const COMPRESSIONS = new Map<string, Compression>([compressionGzip, compressionBrotli].map((compression) => [compression.name, compression]));

/**
 * Reads the error of a failed unary reply in `protocol`, the one its content
 * type names, and consumes its body. The error keeps only the code, the
 * message and the details. When the reply carries no error that can be read,
 * the code follows the HTTP status.
 */
export async function readErrorReply(protocol: RpcProtocol, reply: UniversalServerResponse): Promise<ConnectError> {
  const fallback = new ConnectError(`HTTP ${reply.status} without an error that can be read`, codeFromHttpStatus(reply.status));
  let found: ConnectError | undefined;
  try {
    const body = await readBody(reply);
    if (protocol === "grpc") {
      found = reply.trailer === undefined ? undefined : findTrailerError(reply.trailer);
    } else if (protocol === "grpc-web") {
      found = await grpcWebTrailerError(body, reply.header?.get("grpc-encoding") ?? null);
    } else {
      found = await connectErrorBody(body, reply.header?.get("content-encoding") ?? null);
    }
  } catch (error) {
    return new ConnectError(`${fallback.rawMessage}: ${ConnectError.from(error).rawMessage}`, fallback.code);
  }
  if (found === undefined) {
    return fallback;
  }
  const error = new ConnectError(found.rawMessage, found.code);
  error.details.push(...found.details);
  return error;
}

/**
 * Returns a unary reply in `protocol` that fails with `error`. `header`
 * contains the reply's headers, and the error's metadata is added to them.
 */
export function errorReply(
  protocol: RpcProtocol,
  header: Headers,
  error: ConnectError,
  jsonOptions: Partial<JsonWriteOptions> = {},
): UniversalServerResponse {
  if (protocol === "grpc") {
    return { status: 200, header, body: createAsyncIterable([]), trailer: setTrailerStatus(new Headers(), error) };
  }
  if (protocol === "grpc-web") {
    header.delete("grpc-encoding");
    const trailer = encodeEnvelope(trailerFlag, trailerSerialize(setTrailerStatus(new Headers(), error)));
    return { status: 200, header, body: createAsyncIterable([trailer]) };
  }
  const body = errorToJsonBytes(error, jsonOptions);
  error.metadata.forEach((value, name) => header.set(name, value));
  header.set("content-type", contentTypeUnaryJson);
  header.set("content-length", String(body.byteLength));
  header.delete("content-encoding");
  return { status: codeToHttpStatus(error.code), header, body: createAsyncIterable([body]) };
}

async function readBody(reply: UniversalServerResponse): Promise<Uint8Array> {
  if (reply.body === undefined) {
    return new Uint8Array(0);
  }
  if (reply.body instanceof Uint8Array) {
    return reply.body;
  }
  const chunks: Uint8Array[] = [];
  let length = 0;
  for await (const chunk of reply.body) {
    length += chunk.byteLength;
    if (length > MAX_ERROR_BYTES) {
      throw new ConnectError(`the error reply is larger than ${MAX_ERROR_BYTES} bytes`, Code.Internal);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, length);
}

/** Returns the error in the trailer envelope of a gRPC-Web body, or undefined without one. */
async function grpcWebTrailerError(body: Uint8Array, encoding: string | null): Promise<ConnectError | undefined> {
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  for (let offset = 0; offset + 5 <= body.byteLength; ) {
    const flags = body[offset]!;
    const end = offset + 5 + view.getUint32(offset + 1);
    let data = body.subarray(offset + 5, end);
    if ((flags & trailerFlag) !== 0) {
      if ((flags & COMPRESSED_FLAG) !== 0) {
        data = await decompress(data, encoding);
      }
      return findTrailerError(trailerParse(data));
    }
    offset = end;
  }
  return undefined;
}

/** Returns the error of a Connect unary error body, or undefined when it is not one. */
async function connectErrorBody(body: Uint8Array, encoding: string | null): Promise<ConnectError | undefined> {
  const bytes = encoding === null ? body : await decompress(body, encoding);
  const missing = new ConnectError("missing", Code.Unknown);
  try {
    return errorFromJsonBytes(bytes, undefined, missing);
  } catch {
    return undefined;
  }
}

async function decompress(data: Uint8Array, encoding: string | null): Promise<Uint8Array> {
  const compression = encoding === null ? undefined : COMPRESSIONS.get(encoding);
  if (compression === undefined) {
    throw new ConnectError(`the error reply is compressed with ${encoding ?? "an unnamed encoding"}, which cannot be read`, Code.Internal);
  }
  return compression.decompress(data, MAX_ERROR_BYTES);
}
