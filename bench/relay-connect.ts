/**
 * Reference relay for Connect: a bare connect-node handler
 * (`connectNodeAdapter`) whose SendSms makes the gateway call and returns
 * the id, on a cleartext HTTP/2 port and an HTTP/1.1 port.
 *
 *   node --import tsx bench/relay-connect.ts GATEWAY_URL
 */
import http from "node:http";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { create } from "@bufbuild/protobuf";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { SendSmsResponseSchema, SmsService } from "../gen/smsgateway/v1/sms_service_pb.js";
import { announceReady, relaySms } from "./relay-send.js";

const gatewayUrl = process.argv[2] ?? "";

const handler = connectNodeAdapter({
  routes: (router) => {
    router.service(SmsService, {
      async sendSms(request) {
        return create(SendSmsResponseSchema, { id: await relaySms(gatewayUrl, request) });
      },
    });
  },
});

const h2 = http2.createServer(handler);
const h1 = http.createServer(handler);
h1.keepAliveTimeout = 60_000;

const listen = (server: http.Server | http2.Http2Server) =>
  new Promise<number>((resolve) => server.listen(0, "127.0.0.1", () => resolve((server.address() as AddressInfo).port)));

const [http2Port, http1Port] = await Promise.all([listen(h2), listen(h1)]);
announceReady({ http2Port, http1Port });
process.on("SIGTERM", () => process.exit(0));
