import { Writable } from "node:stream";

import { pino, type Logger } from "pino";
import { expect } from "vitest";

import type { Integration } from "../../src/domain/integration.js";
import { GatewayError, InvalidArgumentError } from "../../src/errors.js";
import { Dispatcher, type DispatcherOptions } from "../../src/dispatch/dispatcher.js";
import { OutboundGuard } from "../../src/outbound/outbound-guard.js";
import { LOOPBACK_ALLOW_LIST } from "../helpers/stub-resolver.js";

export const API_KEY = "key-4f1c9a7e2b";
export const SECRET_KEY = "sec-93bd0e6a51";

/** Builds an integration that sends to `baseUrl`, with test credentials. */
export function makeIntegration(baseUrl: string, overrides: Partial<Integration> = {}): Integration {
  return {
    id: "acme",
    displayName: "ACME SMS",
    baseUrl,
    apiKeyHeader: "X-API-KEY",
    apiKey: API_KEY,
    secretKeyHeader: "",
    secretKey: "",
    defaultSender: "ACME",
    idPath: "data.id",
    datePath: "data.date",
    authenticateByToken: false,
    authUrl: "",
    tokenKey: "",
    maxConcurrentSends: 0,
    maxSendsPerSecond: 0,
    createTime: new Date("2026-01-01T00:00:00Z"),
    updateTime: new Date("2026-01-01T00:00:00Z"),
    ...overrides,
  };
}

/** Creates a pino logger that collects its JSON lines in `lines`. */
export function captureLogger(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _encoding, callback) {
      lines.push(String(chunk));
      callback();
    },
  });
  return { logger: pino({ level: "debug" }, stream), lines };
}

/** Creates a dispatcher with test defaults, a silent logger, and an SSRF guard that allows loopback. */
export function makeDispatcher(options: Partial<DispatcherOptions> = {}): Dispatcher {
  return new Dispatcher({
    timeoutMs: 5_000,
    maxResponseBytes: 1024 * 1024,
    maxConnectionsPerOrigin: 4,
    keepAliveTimeoutMs: 1_000,
    outbound: new OutboundGuard({ allowList: LOOPBACK_ALLOW_LIST }),
    logger: pino({ level: "silent" }),
    ...options,
  });
}

/** Awaits a send that must fail and returns its `GatewayError`. */
export async function gatewayErrorOf(promise: Promise<unknown>): Promise<GatewayError> {
  const error = await promise.then(
    () => new Error("expected the send to fail, but it succeeded"),
    (reason: unknown) => reason,
  );
  expect(error).toBeInstanceOf(GatewayError);
  return error as GatewayError;
}

/** Awaits a send that must fail and returns its `InvalidArgumentError`. */
export async function invalidArgumentOf(promise: Promise<unknown>): Promise<InvalidArgumentError> {
  const error = await promise.then(
    () => new Error("expected the send to fail, but it succeeded"),
    (reason: unknown) => reason,
  );
  expect(error).toBeInstanceOf(InvalidArgumentError);
  return error as InvalidArgumentError;
}
