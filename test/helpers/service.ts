import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Writable } from "node:stream";
import { startApp, type App, type AppOptions } from "../../src/app.js";
import { environmentNames, SETTINGS, type Config } from "../../src/config/settings.js";
import { createLogger } from "../../src/logger.js";
import { LOOPBACK_ALLOW_LIST } from "./stub-resolver.js";

/** A service started for a test, with its log lines kept for assertions. */
export interface TestService {
  app: App;
  baseUrl: string;
  dataDir: string;
  logLines: Record<string, unknown>[];
  stop(): Promise<void>;
}

/**
 * Returns the default configuration, with overrides, as the service would
 * parse it, except that the SSRF guard allows the loopback gateways of the tests.
 */
export function testConfig(overrides: Partial<Config> = {}): Config {
  const config: Record<string, unknown> = { names: environmentNames() };
  for (const setting of SETTINGS) {
    config[setting.key] = setting.parse(setting.defaultValue);
  }
  return { ...(config as unknown as Config), host: "127.0.0.1", port: 0, logLevel: "debug", outboundAllow: LOOPBACK_ALLOW_LIST, ...overrides };
}

/** Starts the service on a free loopback port with a fresh SQLite data dir, unless one is given. */
export async function startTestService(overrides: Partial<Config> = {}, options: AppOptions = {}): Promise<TestService> {
  const ownDataDir = overrides.dataDir === undefined;
  const dataDir = overrides.dataDir ?? mkdtempSync(path.join(tmpdir(), "smsgateway-test-"));
  const logLines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString("utf8").split("\n")) {
        if (line !== "") {
          logLines.push(JSON.parse(line) as Record<string, unknown>);
        }
      }
      callback();
    },
  });
  const app = await startApp(testConfig({ ...overrides, dataDir }), createLogger("debug", sink), options);

  return {
    app,
    baseUrl: `http://127.0.0.1:${app.server.port}`,
    dataDir,
    logLines,
    async stop() {
      await app.close(1_000);
      if (ownDataDir) {
        rmSync(dataDir, { recursive: true, force: true });
      }
    },
  };
}
