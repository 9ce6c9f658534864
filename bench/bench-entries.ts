/**
 * The targets of each round: every service process and relay under each
 * protocol, with the request files that the load tools send to them.
 */
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import path from "node:path";
import { runH2load, runWrk } from "./load-runners.js";
import type { Entry } from "./measurement.js";
import { grpcFrame, sendSmsBatchBytes, sendSmsBytes } from "./request-bodies.js";
import type { SmokeTarget } from "./smoke-test.js";
import { BATCH_SIZE, PROTOCOLS, TARGETS } from "./target-names.js";
import { newRunId, wrkScript } from "./wrk-scripts.js";

const SEND_SMS_PATH = "/smsgateway.v1.SmsService/SendSms";
const SEND_SMS_BATCH_PATH = "/smsgateway.v1.SmsService/SendSmsBatch";
const GRPC_HEADERS = { "content-type": "application/grpc", te: "trailers" };
const CONNECT_HEADERS = { "content-type": "application/proto", "connect-protocol-version": "1" };

/** The processes that the rounds load. */
export interface BenchTargets {
  service: { pid: number; port: number };
  /** The second service process, whose store contains `integrationIds`. */
  manyIntegrations: { pid: number; port: number; integrationIds: readonly string[] };
  grpcRelay: { pid: number; port: number };
  connectRelay: { pid: number; http2Port: number; http1Port: number };
}

function writeFile(directory: string, name: string, contents: string | Uint8Array): string {
  const filePath = path.join(directory, name);
  writeFileSync(filePath, contents);
  return filePath;
}

const url = (port: number, rpcPath = SEND_SMS_PATH) => `http://127.0.0.1:${port}${rpcPath}`;
const h2 = (target: string, bodyFile: string, headers: Record<string, string>, directory: string) => (inFlight: number, seconds: number) =>
  runH2load({ url: target, inFlight, seconds, bodyFile, headers, logFile: path.join(directory, "h2load.log") });
const wrk = (target: string, scriptFile: string) => (inFlight: number, seconds: number) => runWrk({ url: target, inFlight, seconds, scriptFile });
/** A wrk load whose script puts a new idempotency key in every request, with a new run id in every run. */
const wrkNewKeys = (target: string, scriptFile: string) => (inFlight: number, seconds: number) =>
  runWrk({ url: target, inFlight, seconds, scriptFile, scriptArgs: [newRunId()] });
const SEND_SMS = { reachesGateway: true, messagesPerCall: 1 };

/** Writes the gRPC request file into `directory` and returns the entry of the service under gRPC. */
export function serviceGrpcEntry(service: BenchTargets["service"], directory: string): Entry {
  const body = writeFile(directory, "grpc.bin", grpcFrame(sendSmsBytes()));
  return { protocol: PROTOCOLS.grpc, target: TARGETS.service, reference: TARGETS.grpcRelay, pid: service.pid, ...SEND_SMS, load: h2(url(service.port), body, GRPC_HEADERS, directory) };
}

/** Writes the request files into `directory` and returns the entries of one round, in the order they run. */
export function benchEntries(targets: BenchTargets, directory: string): Entry[] {
  const file = (name: string, contents: string | Uint8Array) => writeFile(directory, name, contents);
  // h2load repeats one body, so its key runs send one key per bench run: the first call stores it and the others replay it.
  const runKey = `bench-${randomBytes(4).toString("hex")}`;
  const bodies = {
    grpc: file("grpc.bin", grpcFrame(sendSmsBytes())),
    grpcKey: file("grpc-key.bin", grpcFrame(sendSmsBytes({ idempotencyKey: `${runKey}-grpc` }))),
    grpcBatch: file("grpc-batch.bin", grpcFrame(sendSmsBatchBytes(BATCH_SIZE))),
    connect: file("connect.bin", sendSmsBytes()),
    connectKey: file("connect-key.bin", sendSmsBytes({ idempotencyKey: `${runKey}-connect` })),
    connectBatch: file("connect-batch.bin", sendSmsBatchBytes(BATCH_SIZE)),
    wrk: file("post.lua", wrkScript({ body: sendSmsBytes(), headers: CONNECT_HEADERS })),
    wrkKey: file("post-key.lua", wrkScript({ body: sendSmsBytes(), headers: CONNECT_HEADERS, keyPrefix: `${runKey}-` })),
    wrkSpread: file(
      "post-spread.lua",
      wrkScript({ body: sendSmsBytes({ integrationId: "" }), headers: CONNECT_HEADERS, integrationIds: targets.manyIntegrations.integrationIds }),
    ),
    wrkBatch: file("post-batch.lua", wrkScript({ body: sendSmsBatchBytes(BATCH_SIZE), headers: CONNECT_HEADERS })),
  };
  const h2In = (target: string, bodyFile: string, headers: Record<string, string>) => h2(target, bodyFile, headers, directory);

  const { service, manyIntegrations, grpcRelay, connectRelay } = targets;
  const serviceUrl = url(service.port);
  const batchUrl = url(service.port, SEND_SMS_BATCH_PATH);
  const manyUrl = url(manyIntegrations.port);
  const grpcRelayUrl = url(grpcRelay.port);
  const relayH2Url = url(connectRelay.http2Port);
  const relayH1Url = url(connectRelay.http1Port);
  const sendSms = SEND_SMS;
  const replayed = { reachesGateway: false, messagesPerCall: 1 };
  // At 256 calls in flight a batch call takes longer than a run, so the load tools would count none.
  const batch = { reachesGateway: true, messagesPerCall: BATCH_SIZE, maxInFlight: 64 };
  const fromService = { reference: TARGETS.service, pid: service.pid };
  const fromMany = { reference: TARGETS.service, pid: manyIntegrations.pid };

  const { grpc, connectHttp2, connectHttp1 } = PROTOCOLS;
  return [
    serviceGrpcEntry(service, directory),
    { protocol: grpc, target: TARGETS.serviceWithKey, reference: TARGETS.grpcRelay, pid: service.pid, ...replayed, load: h2In(serviceUrl, bodies.grpcKey, GRPC_HEADERS) },
    { protocol: grpc, target: TARGETS.manyIntegrations, ...fromMany, ...sendSms, load: h2In(manyUrl, bodies.grpc, GRPC_HEADERS) },
    { protocol: grpc, target: TARGETS.batch, ...fromService, ...batch, load: h2In(batchUrl, bodies.grpcBatch, GRPC_HEADERS) },
    { protocol: grpc, target: TARGETS.grpcRelay, pid: grpcRelay.pid, ...sendSms, load: h2In(grpcRelayUrl, bodies.grpc, GRPC_HEADERS) },
    { protocol: grpc, target: TARGETS.connectRelay, reference: TARGETS.grpcRelay, pid: connectRelay.pid, ...sendSms, load: h2In(relayH2Url, bodies.grpc, GRPC_HEADERS) },
    { protocol: connectHttp2, target: TARGETS.service, reference: TARGETS.connectRelay, pid: service.pid, ...sendSms, load: h2In(serviceUrl, bodies.connect, CONNECT_HEADERS) },
    { protocol: connectHttp2, target: TARGETS.serviceWithKey, reference: TARGETS.connectRelay, pid: service.pid, ...replayed, load: h2In(serviceUrl, bodies.connectKey, CONNECT_HEADERS) },
    { protocol: connectHttp2, target: TARGETS.manyIntegrations, ...fromMany, ...sendSms, load: h2In(manyUrl, bodies.connect, CONNECT_HEADERS) },
    { protocol: connectHttp2, target: TARGETS.batch, ...fromService, ...batch, load: h2In(batchUrl, bodies.connectBatch, CONNECT_HEADERS) },
    { protocol: connectHttp2, target: TARGETS.connectRelay, pid: connectRelay.pid, ...sendSms, load: h2In(relayH2Url, bodies.connect, CONNECT_HEADERS) },
    { protocol: connectHttp1, target: TARGETS.service, reference: TARGETS.connectRelay, pid: service.pid, ...sendSms, load: wrk(serviceUrl, bodies.wrk) },
    { protocol: connectHttp1, target: TARGETS.serviceWithKey, reference: TARGETS.connectRelay, pid: service.pid, ...sendSms, load: wrkNewKeys(serviceUrl, bodies.wrkKey) },
    { protocol: connectHttp1, target: TARGETS.manyIntegrations, ...fromMany, ...sendSms, load: wrk(manyUrl, bodies.wrkSpread) },
    { protocol: connectHttp1, target: TARGETS.batch, ...fromService, ...batch, load: wrk(batchUrl, bodies.wrkBatch) },
    { protocol: connectHttp1, target: TARGETS.connectRelay, pid: connectRelay.pid, ...sendSms, load: wrk(relayH1Url, bodies.wrk) },
  ];
}

/** Returns one SendSms check per process and protocol that the rounds load. */
export function smokeTargets(targets: BenchTargets): SmokeTarget[] {
  const origin = (port: number) => `http://127.0.0.1:${port}`;
  const { service, manyIntegrations, grpcRelay, connectRelay } = targets;
  return [
    ...([["grpc", PROTOCOLS.grpc], ["connect-h2", PROTOCOLS.connectHttp2], ["connect-h1", PROTOCOLS.connectHttp1]] as const).flatMap(([protocol, name]) => [
      { name: `service over ${name}`, url: origin(service.port), protocol },
      { name: `service with ${manyIntegrations.integrationIds.length} integrations over ${name}`, url: origin(manyIntegrations.port), protocol },
    ]),
    { name: "grpc-js relay", url: origin(grpcRelay.port), protocol: "grpc" },
    { name: "connect relay over gRPC", url: origin(connectRelay.http2Port), protocol: "grpc" },
    { name: "connect relay over HTTP/2", url: origin(connectRelay.http2Port), protocol: "connect-h2" },
    { name: "connect relay over HTTP/1.1", url: origin(connectRelay.http1Port), protocol: "connect-h1" },
  ];
}
