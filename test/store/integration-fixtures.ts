import pino, { type Logger } from "pino";

import type { IntegrationFields } from "../../src/domain/integration.js";

/** Returns valid integration fields, with `overrides` applied. */
export function sampleFields(overrides: Partial<IntegrationFields> = {}): IntegrationFields {
  return {
    displayName: "Test gateway",
    baseUrl: "https://gateway.example/sms",
    apiKeyHeader: "X-API-KEY",
    apiKey: "api-key-0123456789",
    secretKeyHeader: "X-SECRET-KEY",
    secretKey: "secret-key-0123456789",
    defaultSender: "SMSGW",
    idPath: "data.id",
    datePath: "data.date",
    authenticateByToken: false,
    authUrl: "",
    tokenKey: "",
    maxConcurrentSends: 0,
    maxSendsPerSecond: 0,
    ...overrides,
  };
}

/** Returns a logger that drops every line. */
export function silentLogger(): Logger {
  return pino({ level: "silent" });
}

/** Returns a logger that keeps every line as text, for asserting on log output. */
export function capturingLogger(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const logger = pino({ level: "trace" }, { write: (line: string) => void lines.push(line) });
  return { logger, lines };
}

/** Waits `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
