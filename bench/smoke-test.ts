/**
 * One SendSms per target and protocol before the load starts, through
 * Connect's own clients, so that a target that fails every call stops the
 * benchmark instead of being measured.
 */
import { createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { SmsService } from "../gen/smsgateway/v1/sms_service_pb.js";
import { BENCH_INTEGRATION_ID } from "./request-bodies.js";

/** A target to check: any URL on its origin, and the protocol the load will use. */
export interface SmokeTarget {
  name: string;
  url: string;
  protocol: "grpc" | "connect-h2" | "connect-h1";
}

function transportFor(target: SmokeTarget): Transport {
  const baseUrl = new URL(target.url).origin;
  if (target.protocol === "grpc") {
    return createGrpcTransport({ baseUrl });
  }
  return createConnectTransport({ baseUrl, httpVersion: target.protocol === "connect-h2" ? "2" : "1.1" });
}

/** Sends one SMS to each target. @throws Error naming the target that failed. */
export async function smokeTest(targets: readonly SmokeTarget[]): Promise<void> {
  for (const target of targets) {
    const sms = createClient(SmsService, transportFor(target));
    try {
      const sent = await sms.sendSms({ integrationId: BENCH_INTEGRATION_ID, to: "+15550100000", content: "smoke test" });
      if (sent.id === "") {
        throw new Error("the reply has no message id");
      }
    } catch (error) {
      throw new Error(`smoke test of the ${target.name} failed: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
}
