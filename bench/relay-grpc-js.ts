/**
 * Reference relay for gRPC: a bare grpc-js server whose SendSms decodes the
 * request with protobuf-es, makes the gateway call and returns the id.
 *
 *   node --import tsx bench/relay-grpc-js.ts GATEWAY_URL
 */
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import {
  SendSmsRequestSchema,
  SendSmsResponseSchema,
  type SendSmsRequest,
  type SendSmsResponse,
} from "../gen/smsgateway/v1/sms_service_pb.js";
import { announceReady, relaySms } from "./relay-send.js";

const gatewayUrl = process.argv[2] ?? "";

const server = new grpc.Server();
server.addService(
  {
    sendSms: {
      path: "/smsgateway.v1.SmsService/SendSms",
      requestStream: false,
      responseStream: false,
      requestSerialize: (message: SendSmsRequest) => Buffer.from(toBinary(SendSmsRequestSchema, message)),
      requestDeserialize: (bytes: Buffer) => fromBinary(SendSmsRequestSchema, bytes),
      responseSerialize: (message: SendSmsResponse) => Buffer.from(toBinary(SendSmsResponseSchema, message)),
      responseDeserialize: (bytes: Buffer) => fromBinary(SendSmsResponseSchema, bytes),
    },
  },
  {
    sendSms: (call: grpc.ServerUnaryCall<SendSmsRequest, SendSmsResponse>, callback: grpc.sendUnaryData<SendSmsResponse>) => {
      relaySms(gatewayUrl, call.request).then(
        (id) => callback(null, create(SendSmsResponseSchema, { id })),
        (error: unknown) => callback({ code: grpc.status.UNAVAILABLE, details: String(error) }),
      );
    },
  },
);

server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (error, port) => {
  if (error) {
    throw error;
  }
  announceReady({ port });
});
process.on("SIGTERM", () => server.tryShutdown(() => process.exit(0)));
