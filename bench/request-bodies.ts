/**
 * The requests the benchmark sends: the integrations it stores, and the
 * SendSms and SendSmsBatch bodies as protobuf bytes and gRPC frames.
 */
import { create, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import type { IntegrationSchema } from "../gen/smsgateway/v1/integration_pb.js";
import { SendSmsBatchRequestSchema, SendSmsRequestSchema } from "../gen/smsgateway/v1/sms_service_pb.js";

/** Integration id that the runner configures on every service, and that h2load sends to. */
export const BENCH_INTEGRATION_ID = "bench";

const TO = "+15550100000";
const CONTENT = "Your code is 123456";

/** Returns an integration that sends to the bench gateway. */
export function benchIntegration(id: string, gatewayUrl: string): MessageInitShape<typeof IntegrationSchema> {
  return { id, baseUrl: gatewayUrl, apiKeyHeader: "X-API-KEY", apiKey: "bench-key-0123456789", defaultSender: "Bench" };
}

/** Returns `count` integration ids: {@link BENCH_INTEGRATION_ID}, then `bench-1`, `bench-2` and so on. */
export function benchIntegrationIds(count: number): string[] {
  return Array.from({ length: count }, (_, index) => (index === 0 ? BENCH_INTEGRATION_ID : `${BENCH_INTEGRATION_ID}-${index}`));
}

/** Fields of the benchmark's SendSms request that differ between its bodies. */
export interface SendSmsFields {
  /** Defaults to {@link BENCH_INTEGRATION_ID}; an empty id leaves the field out of the encoding. */
  integrationId?: string;
  idempotencyKey?: string;
}

/** Returns the protobuf encoding of the benchmark's SendSms request. */
export function sendSmsBytes(fields: SendSmsFields = {}): Uint8Array {
  return toBinary(
    SendSmsRequestSchema,
    create(SendSmsRequestSchema, {
      integrationId: fields.integrationId ?? BENCH_INTEGRATION_ID,
      to: TO,
      content: CONTENT,
      idempotencyKey: fields.idempotencyKey ?? "",
    }),
  );
}

/** Returns the protobuf encoding of a SendSmsBatch request of `messageCount` copies of the SendSms message. */
export function sendSmsBatchBytes(messageCount: number): Uint8Array {
  return toBinary(
    SendSmsBatchRequestSchema,
    create(SendSmsBatchRequestSchema, {
      integrationId: BENCH_INTEGRATION_ID,
      messages: Array.from({ length: messageCount }, () => ({ to: TO, content: CONTENT })),
    }),
  );
}

/** Returns a message in a gRPC length-prefixed frame: flag byte 0 (uncompressed), then a 4-byte big-endian length. */
export function grpcFrame(message: Uint8Array): Buffer {
  const prefix = Buffer.alloc(5);
  prefix.writeUInt32BE(message.length, 1);
  return Buffer.concat([prefix, message]);
}
