import { Writable } from "node:stream";

import { afterEach, beforeAll, beforeEach, describe, expect, test } from "vitest";

import { ConfigError } from "../../src/config/load-config.js";
import { EncryptingIntegrationStore } from "../../src/security/encrypting-integration-store.js";
import { checkStoredEncryptionKeys } from "../../src/security/encryption-key-check.js";
import type { LoadedEncryptionKeys } from "../../src/security/encryption-key-source.js";
import { runReencryptCommand } from "../../src/security/reencrypt-command.js";
import type { KeyCheckStore } from "../../src/store/key-check-store.js";
import type { OpenedStore } from "../../src/store/open-store.js";
import { capturingLogger, sampleFields, silentLogger } from "../store/integration-fixtures.js";
import { assertPostgresReachable } from "../store/postgres-test-database.js";
import { cipherOf, keyEntry, ring } from "./security-fixtures.js";
import { STORE_ENGINES, type EngineLocation } from "./store-engines.js";

/** The keys as `loadEncryptionKeys` returns them from ENCRYPTION_KEYS. */
function keysOf(...entries: string[]): LoadedEncryptionKeys {
  return { ring: ring(...entries), source: "ENCRYPTION_KEYS", setting: "ENCRYPTION_KEYS" };
}

/** Returns the base64 key of a `keyId:base64key` entry. */
function material(entry: string): string {
  return entry.slice(entry.indexOf(":") + 1);
}

/** Awaits a promise that must reject, and returns its error. */
async function failure(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    return error as Error;
  }
  throw new Error("expected a rejection");
}

describe.each(STORE_ENGINES)("$name", (engine) => {
  describe.skipIf(engine.skip)("encryption key check", () => {
    let location: EngineLocation;
    const opened: OpenedStore[] = [];

    beforeAll(async () => {
      if (engine.name === "PostgreSQL") {
        await assertPostgresReachable();
      }
    });

    beforeEach(async () => {
      location = await engine.open();
    });

    afterEach(async () => {
      for (const store of opened.splice(0)) {
        await store.store.close();
      }
      await location.dispose();
    });

    /** Opens a store handle on the location, as one process does; the test closes it. */
    async function open(): Promise<OpenedStore> {
      const store = await location.openStore();
      opened.push(store);
      return store;
    }

    /** Checks `keys` against the store through a new handle, as a process does at start-up, and closes it. */
    async function startWith(keys: LoadedEncryptionKeys, logger = silentLogger()): Promise<void> {
      const { store, keyChecks } = await location.openStore();
      try {
        await checkStoredEncryptionKeys(keyChecks, keys, location.description, logger);
      } finally {
        await store.close();
      }
    }

    /** Creates integrations with secrets encrypted under the current key of `entries`. */
    async function createUnder(entries: string[], ids: string[]): Promise<void> {
      const store = new EncryptingIntegrationStore(await location.openPlain(), cipherOf(...entries));
      try {
        for (const id of ids) {
          await store.create(sampleFields({ apiKey: `api-${id}-0123456789`, secretKey: `secret-${id}-0123456789` }), id);
        }
      } finally {
        await store.close();
      }
    }

    test("records one check value per key", async () => {
      const a = keyEntry("a");
      const b = keyEntry("b");

      await startWith(keysOf(a, b));
      const rows = await location.rawKeyChecks();
      await startWith(keysOf(a, b));

      expect(rows.map((row) => row.key_id)).toEqual(["a", "b"]);
      expect(rows[0]?.check_value).toMatch(/^v1:a:[A-Za-z0-9_-]+$/);
      expect(rows[1]?.check_value).toMatch(/^v1:b:[A-Za-z0-9_-]+$/);
      expect(rows[0]?.create_time).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
      expect(JSON.stringify(rows)).not.toContain(material(a));
      expect(JSON.stringify(rows)).not.toContain("encryption key check");
      expect(await location.rawKeyChecks()).toEqual(rows);
    });

    test("another key under a recorded id is rejected", async () => {
      const original = keyEntry("p2");
      const mistyped = keyEntry("p2");
      await startWith(keysOf(keyEntry("p1"), original));
      const rows = await location.rawKeyChecks();
      const { logger, lines } = capturingLogger();

      const error = await failure(startWith(keysOf(mistyped), logger));

      expect(error).toBeInstanceOf(ConfigError);
      expect(error.message).toMatch(
        new RegExp(`^key id "p2" in ENCRYPTION_KEYS is not the key that was first used under this id in ${escape(location.description)}: `),
      );
      expect(error.message).toContain("Configure the key that was first used under this id; a new key needs a new key id.");
      expect(error.message).toContain('No secret is stored under this id yet, so if this key is the right one');
      expect(error.message).not.toContain(material(mistyped));
      expect(error.message).not.toContain(String(rows[1]?.check_value));
      expect(lines.join("")).not.toContain(material(mistyped));
      expect(await location.rawKeyChecks()).toEqual(rows);
    });

    test("no recovery hint once secrets use the id", async () => {
      const original = keyEntry("p2");
      await startWith(keysOf(original));
      await createUnder([original], ["one"]);

      const error = await failure(startWith(keysOf(keyEntry("p2"))));

      expect(error.message).toContain("a new key needs a new key id.");
      expect(error.message).not.toContain("No secret is stored");
    });

    test("every wrong key is named", async () => {
      await startWith(keysOf(keyEntry("a"), keyEntry("b"), keyEntry("c")));

      const error = await failure(startWith(keysOf(keyEntry("a"), keyEntry("b"))));

      expect(error).toBeInstanceOf(ConfigError);
      expect(error.message).toMatch(/^key ids "a", "b" in ENCRYPTION_KEYS are not the keys that were first used under these ids/);
    });

    test("a wrong key is rejected where it was configured", async () => {
      await startWith(keysOf(keyEntry("k")));
      const fromFile: LoadedEncryptionKeys = { ...keysOf(keyEntry("k")), source: "/etc/keys", setting: "ENCRYPTION_KEYS_FILE /etc/keys" };

      const error = await failure(startWith(fromFile));

      expect(error.message).toMatch(/^key id "k" in ENCRYPTION_KEYS_FILE \/etc\/keys is not the key/);
    });

    test("the later of two first starts fails", async () => {
      const first = keyEntry("p2");
      const second = keyEntry("p2");
      const loser = await open();
      const winner = await open();
      // The winner inserts its check value after the loser read none and before the loser inserts its own.
      const racing: KeyCheckStore = {
        readChecks: (keyIds) => loser.keyChecks.readChecks(keyIds),
        countIntegrationsByKeyId: () => loser.keyChecks.countIntegrationsByKeyId(),
        secretsUnderKey: (keyId, limit) => loser.keyChecks.secretsUnderKey(keyId, limit),
        insertCheck: async (keyId, checkValue) => {
          await checkStoredEncryptionKeys(winner.keyChecks, keysOf(first), location.description, silentLogger());
          return loser.keyChecks.insertCheck(keyId, checkValue);
        },
      };

      const error = await failure(checkStoredEncryptionKeys(racing, keysOf(second), location.description, silentLogger()));

      expect(error).toBeInstanceOf(ConfigError);
      expect(error.message).toMatch(/^key id "p2" in ENCRYPTION_KEYS is not the key that was first used under this id/);
      await startWith(keysOf(first));
    });

    test("simultaneous first starts keep one key", async () => {
      const handles = [await open(), await open()];

      for (let round = 0; round < 5; round++) {
        const entries = [keyEntry(`id${round}`), keyEntry(`id${round}`)];
        const outcomes = await Promise.allSettled(
          handles.map((handle, index) => checkStoredEncryptionKeys(handle.keyChecks, keysOf(entries[index]!), location.description, silentLogger())),
        );

        const rejected = outcomes.filter((outcome) => outcome.status === "rejected");
        expect(rejected, `round ${round}`).toHaveLength(1);
        expect((rejected[0] as PromiseRejectedResult).reason).toBeInstanceOf(ConfigError);
        const winner = outcomes.findIndex((outcome) => outcome.status === "fulfilled");
        await startWith(keysOf(entries[winner]!));
      }
    });

    test("an unrecorded id must decrypt its stored secrets", async () => {
      // Secrets stored before the check existed, as after an upgrade.
      const original = keyEntry("p2");
      await createUnder([original], ["one", "two"]);

      const error = await failure(startWith(keysOf(keyEntry("p2"))));

      expect(error).toBeInstanceOf(ConfigError);
      expect(error.message).toMatch(/^key id "p2" in ENCRYPTION_KEYS is not the key that was first used under this id in .*: it does not decrypt the secrets stored under "p2" \(integrations one, two\)/);
      expect(error.message).toContain("a new key needs a new key id");
      expect(await location.rawKeyChecks()).toEqual([]);

      await startWith(keysOf(original));
      expect((await location.rawKeyChecks()).map((row) => row.key_id)).toEqual(["p2"]);
    });

    test("malformed secrets do not count against a key", async () => {
      await createUnder([keyEntry("p2")], ["damaged"]);
      await location.writeRawSecrets("damaged", "v1:p2:not-base64!", "v1:p2:");

      await startWith(keysOf(keyEntry("p2")));

      expect((await location.rawKeyChecks()).map((row) => row.key_id)).toEqual(["p2"]);
    });

    test("a key behind a minority of secrets is rejected", async () => {
      // Before the checks existed, a replica with a wrong key wrote "a0", and the right key wrote the rest.
      const right = keyEntry("p2");
      const wrong = keyEntry("p2");
      await createUnder([wrong], ["a0"]);
      await createUnder([right], ["x1", "x2", "x3"]);

      const error = await failure(startWith(keysOf(wrong)));

      expect(error).toBeInstanceOf(ConfigError);
      expect(error.message).toMatch(/^key id "p2" in ENCRYPTION_KEYS is not the key that was first used under this id in .*: it decrypts 2 of the 8 secrets tried under "p2" but not those of integrations x1, x2, x3/);
      expect(error.message).toContain("Configure the key that encrypted most of them; a new key needs a new key id.");
      expect(await location.rawKeyChecks()).toEqual([]);

      await startWith(keysOf(right));
      expect((await location.rawKeyChecks()).map((row) => row.key_id)).toEqual(["p2"]);
      const rejected = await failure(startWith(keysOf(wrong)));
      expect(rejected.message).toContain("the check value that the store recorded for it (table encryption_key_checks) does not decrypt");
    });

    test("a key behind a majority of secrets is kept", async () => {
      const right = keyEntry("p2");
      await createUnder([keyEntry("p2")], ["a0"]);
      await createUnder([right], ["x1", "x2"]);

      await startWith(keysOf(right));

      expect((await location.rawKeyChecks()).map((row) => row.key_id)).toEqual(["p2"]);
    });

    test("counts integrations per key id", async () => {
      await createUnder([keyEntry("old")], ["a", "b"]);
      await createUnder([keyEntry("new")], ["c"]);
      await createUnder([keyEntry("x")], ["mixed", "legacy", "malformed", "empty"]);
      await location.writeRawSecrets("mixed", `${(await location.rawRow("a"))?.api_key}`, String((await location.rawRow("mixed"))?.secret_key));
      await location.writeRawSecrets("legacy", "plain-text-key", "");
      await location.writeRawSecrets("malformed", "v1:no-colon", "v1::empty-id");
      await location.writeRawSecrets("empty", "", "");
      const { keyChecks } = await open();

      const usage = await keyChecks.countIntegrationsByKeyId();

      expect(Object.fromEntries(usage)).toEqual({ old: 3, new: 1, x: 1 });
    });

    test("rotation on two replicas is never rejected", async () => {
      const OLD = keyEntry("old");
      const NEW = keyEntry("new");
      /** Each replica's configured keys, and its running store. */
      const replicas: { keys: string[]; store?: EncryptingIntegrationStore }[] = [{ keys: [OLD] }, { keys: [OLD] }];
      const restart = async (index: number, keys: string[]) => {
        const replica = replicas[index]!;
        await replica.store?.close();
        const { store, keyChecks } = await location.openStore();
        await checkStoredEncryptionKeys(keyChecks, keysOf(...keys), location.description, silentLogger());
        replica.keys = keys;
        replica.store = new EncryptingIntegrationStore(store, cipherOf(...keys));
      };
      const create = (index: number, id: string) => replicas[index]!.store!.create(sampleFields({ apiKey: `api-${id}-0123456789` }), id);
      const readAll = async (index: number) => {
        const page = await replicas[index]!.store!.list({ limit: 100 });
        return page.map((integration) => [integration.id, integration.apiKey, integration.unreadableSecrets]);
      };
      const expected = (ids: string[]) => ids.map((id) => [id, `api-${id}-0123456789`, undefined]);

      try {
        await restart(0, [OLD]);
        await restart(1, [OLD]);
        await create(0, "before");

        // Round 1: the new key first on every replica, one restart at a time.
        await restart(0, [NEW, OLD]);
        await create(1, "round1");
        await restart(1, [NEW, OLD]);
        // Round 2: the new key last, so it encrypts the writes.
        await restart(0, [OLD, NEW]);
        await create(0, "round2");
        expect(await readAll(1)).toEqual(expected(["before", "round1", "round2"]));
        await restart(1, [OLD, NEW]);

        const err: string[] = [];
        const logs = new Writable({ write: (_chunk, _encoding, callback) => callback() });
        const env = { ...location.command.env, ENCRYPTION_KEYS: `${OLD},${NEW}` };
        const code = await runReencryptCommand([], env, { out: () => undefined, err: (line) => err.push(line), logs });
        expect(err).toEqual([]);
        expect(code).toBe(0);

        // The old key removed.
        await restart(0, [NEW]);
        await restart(1, [NEW]);
        expect(await readAll(0)).toEqual(expected(["before", "round1", "round2"]));
        expect((await location.rawKeyChecks()).map((row) => row.key_id)).toEqual(["new", "old"]);
      } finally {
        for (const replica of replicas) {
          await replica.store?.close();
        }
      }

      const mistyped = await failure(startWith(keysOf(keyEntry("new"))));
      expect(mistyped).toBeInstanceOf(ConfigError);
    });
  });
});

/** Escapes a text for use in a regular expression. */
function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
