import { afterEach, beforeEach, describe, expect, test } from "vitest";

import { EncryptingIntegrationStore } from "../../src/security/encrypting-integration-store.js";
import { checkStoredEncryptionKeys } from "../../src/security/encryption-key-check.js";
import type { LoadedEncryptionKeys } from "../../src/security/encryption-key-source.js";
import { capturingLogger, sampleFields } from "../store/integration-fixtures.js";
import { cipherOf, keyEntry, ring } from "./security-fixtures.js";
import { STORE_ENGINES, type EngineLocation } from "./store-engines.js";

/** A parsed log line. */
type LogLine = Record<string, unknown> & { level: number; msg: string };

const ERROR = 50;
const WARN = 40;
const INFO = 30;

const CONFIGURED = keyEntry("configured");

/** Returns whether a line is the one that names the key ids whose check values a start recorded. */
function isRecordedLine(line: LogLine): boolean {
  return line.msg.startsWith("recorded the check values");
}

describe("stored key usage at start-up", () => {
  let location: EngineLocation;

  beforeEach(async () => {
    location = await STORE_ENGINES[0]!.open();
  });

  afterEach(async () => {
    await location.dispose();
  });

  async function createUnder(entry: string, ids: string[]): Promise<void> {
    const store = new EncryptingIntegrationStore(await location.openPlain(), cipherOf(entry));
    try {
      for (const id of ids) {
        await store.create(sampleFields(), id);
      }
    } finally {
      await store.close();
    }
  }

  /** Runs the start-up check with `keys` and returns the log lines it wrote. */
  async function startWith(keys: LoadedEncryptionKeys): Promise<LogLine[]> {
    const { logger, lines } = capturingLogger();
    const { store, keyChecks } = await location.openStore();
    try {
      await checkStoredEncryptionKeys(keyChecks, keys, location.description, logger);
    } finally {
      await store.close();
    }
    return lines.map((line) => JSON.parse(line) as LogLine);
  }

  function fromEnvironment(overrides: Partial<LoadedEncryptionKeys> = {}): LoadedEncryptionKeys {
    return { ring: ring(CONFIGURED), source: "ENCRYPTION_KEYS", setting: "ENCRYPTION_KEYS", ...overrides };
  }

  test("new key ids get one info line, once", async () => {
    const first = await startWith(fromEnvironment());
    const second = await startWith(fromEnvironment());

    const recorded = (lines: LogLine[]) => lines.filter(isRecordedLine);
    expect(recorded(first)).toEqual([expect.objectContaining({ level: INFO, keyIds: ["configured"], source: "ENCRYPTION_KEYS" })]);
    expect(recorded(second)).toEqual([]);
  });

  test("unconfigured key ids get one error line", async () => {
    await createUnder(keyEntry("k2"), ["a", "b", "c"]);
    await createUnder(keyEntry("k3"), ["d"]);
    await createUnder(CONFIGURED, ["e"]);

    const lines = await startWith(fromEnvironment());

    const errors = lines.filter((line) => line.level === ERROR);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({
      keyIds: ["k2", "k3"],
      integrations: 4,
      integrationsByKeyId: { k2: 3, k3: 1 },
      configuredKeyIds: ["configured"],
      source: "ENCRYPTION_KEYS",
    });
    expect(errors[0]?.msg).toBe(
      "stored gateway secrets are encrypted under key ids that are not configured; sends through these integrations fail " +
        "with FAILED_PRECONDITION until those keys are added to ENCRYPTION_KEYS or ENCRYPTION_KEYS_FILE, or the secrets " +
        "are set again with ConfigureIntegration",
    );
  });

  test("configured key ids log nothing more", async () => {
    await createUnder(CONFIGURED, ["a"]);

    const lines = await startWith(fromEnvironment());

    expect(lines.filter((line) => !isRecordedLine(line))).toEqual([]);
  });

  test("used generated keys get a warning", async () => {
    await createUnder(keyEntry("local-20260101-abcdef"), ["a"]);
    const leftOut = { file: "/data/encryption-keys", keyIds: ["local-20260101-abcdef"] };

    const lines = await startWith(fromEnvironment({ generatedKeysLeftOut: leftOut }));

    const warning = lines.find((line) => line.level === WARN);
    expect(warning).toMatchObject({ file: "/data/encryption-keys", keyIds: ["local-20260101-abcdef"] });
    expect(warning?.msg).toMatch(/^the generated key file in DATA_DIR has keys that stored secrets use but the configured keys leave out; copy their lines/);
    expect(lines.filter((line) => line.level === INFO && !isRecordedLine(line))).toEqual([]);
  });

  test("unused generated keys get an info line", async () => {
    await createUnder(CONFIGURED, ["a"]);
    const leftOut = { file: "/data/encryption-keys", keyIds: ["local-20260101-abcdef"] };

    const lines = await startWith(fromEnvironment({ generatedKeysLeftOut: leftOut }));

    expect(lines.filter((line) => line.level >= WARN)).toEqual([]);
    expect(lines).toContainEqual(
      expect.objectContaining({
        level: INFO,
        file: "/data/encryption-keys",
        keyIds: ["local-20260101-abcdef"],
        msg: expect.stringContaining("the file may be removed once it is backed up"),
      }),
    );
    expect(JSON.stringify(lines)).not.toContain("cannot be decrypted");
  });
});
