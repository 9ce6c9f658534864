import { setFlagsFromString } from "node:v8";
import { afterEach, beforeAll, beforeEach, describe, expect, test } from "vitest";

import { EncryptingIntegrationStore } from "../../src/security/encrypting-integration-store.js";
import type { SecretCipher } from "../../src/security/secret-cipher.js";
import type { IntegrationStore, SecretColumnsStore } from "../../src/store/integration-store.js";
import { sampleFields } from "../store/integration-fixtures.js";
import { assertPostgresReachable } from "../store/postgres-test-database.js";
import { describeStoreContract } from "../store/store-contract.js";
import { cipherOf, keyEntry } from "./security-fixtures.js";
import { STORE_ENGINES, type EngineLocation } from "./store-engines.js";

const K1 = keyEntry("k1");
const API_KEY = "api-key-plain-4711";
const SECRET_KEY = "secret-key-plain-0815";

describe.each(STORE_ENGINES)("$name", (engine) => {
  describe.skipIf(engine.skip)("encrypting store", () => {
    beforeAll(async () => {
      if (engine.name === "PostgreSQL") {
        await assertPostgresReachable();
      }
    });

    describeStoreContract(`${engine.name} encrypting`, async () => {
      const location = await engine.open();
      const cipher = cipherOf(K1);
      return {
        open: async () => new EncryptingIntegrationStore(await location.openPlain(), cipher),
        dispose: () => location.dispose(),
      };
    });

    describe("stored values", () => {
      let location: EngineLocation;
      let plain: IntegrationStore & SecretColumnsStore;
      let cipher: SecretCipher;
      let store: EncryptingIntegrationStore;

      beforeEach(async () => {
        location = await engine.open();
        plain = await location.openPlain();
        cipher = cipherOf(K1);
        store = new EncryptingIntegrationStore(plain, cipher);
      });

      afterEach(async () => {
        await store.close();
        await location.dispose();
      });

      // A hidden class per integration made every property read of an integration megamorphic
      // once the cache froze them. %HaveSameMap is V8's own check of the hidden class.
      test("frozen integrations share a shape", async () => {
        setFlagsFromString("--allow-natives-syntax");
        const haveSameMap = new Function("a", "b", "return %HaveSameMap(a, b)") as (a: object, b: object) => boolean;
        const frozen = [];
        for (let i = 0; i < 6; i++) {
          const { id } = await store.create(sampleFields({ apiKey: `${API_KEY}-${i}` }));
          frozen.push(Object.freeze(await store.get(id)));
        }

        for (const integration of frozen.slice(1)) {
          expect(haveSameMap(frozen[0]!, integration!)).toBe(true);
        }
      });

      test("database never holds the plain text", async () => {
        const created = await store.create(sampleFields({ apiKey: API_KEY, secretKey: SECRET_KEY }));
        const afterCreate = await location.rawRow(created.id);
        await store.update(created.id, sampleFields({ apiKey: `${API_KEY}-new`, secretKey: `${SECRET_KEY}-new` }));
        const afterUpdate = await location.rawRow(created.id);

        for (const row of [afterCreate, afterUpdate]) {
          expect(row?.api_key).toMatch(/^v1:k1:/);
          expect(row?.secret_key).toMatch(/^v1:k1:/);
          expect(JSON.stringify(row)).not.toContain(API_KEY);
          expect(JSON.stringify(row)).not.toContain(SECRET_KEY);
        }
        expect(created).toMatchObject({ apiKey: API_KEY, secretKey: SECRET_KEY });
        expect(await store.get(created.id)).toMatchObject({ apiKey: `${API_KEY}-new`, secretKey: `${SECRET_KEY}-new` });
      });

      test("empty secret key stays empty", async () => {
        await store.create(sampleFields({ secretKeyHeader: "", secretKey: "" }), "no-secret");

        expect((await location.rawRow("no-secret"))?.secret_key).toBe("");
        expect((await store.get("no-secret"))?.secretKey).toBe("");
      });

      test("legacy plain-text row still reads", async () => {
        await plain.create(sampleFields({ apiKey: API_KEY, secretKey: SECRET_KEY }), "legacy");

        const read = await store.get("legacy");

        expect(read).toMatchObject({ apiKey: API_KEY, secretKey: SECRET_KEY });
        expect(read?.unreadableSecrets).toBeUndefined();
      });

      test("ciphertext moved to another row does not decrypt", async () => {
        await store.create(sampleFields({ apiKey: API_KEY }), "source");
        await store.create(sampleFields({ apiKey: "target-key-1234" }), "target");
        const source = await location.rawRow("source");
        const target = await location.rawRow("target");
        await location.writeRawSecrets("target", String(source?.api_key), String(target?.secret_key));

        const read = await store.get("target");
        const listed = await store.list({ limit: 10 });

        expect(read?.apiKey).toBe("");
        expect(read?.secretKey).toBe(sampleFields().secretKey);
        expect(read?.unreadableSecrets).toEqual([{ field: "api_key", keyId: "k1", failure: "authentication_failed" }]);
        expect(listed.map((integration) => integration.id)).toEqual(["source", "target"]);
        expect(listed[0]?.apiKey).toBe(API_KEY);
      });

      test("swapped columns do not decrypt", async () => {
        await store.create(sampleFields(), "swapped");
        const row = await location.rawRow("swapped");
        await location.writeRawSecrets("swapped", String(row?.secret_key), String(row?.api_key));

        const read = await store.get("swapped");

        expect(read?.unreadableSecrets?.map((secret) => secret.field)).toEqual(["api_key", "secret_key"]);
        expect(read?.unreadableSecrets?.every((secret) => secret.failure === "authentication_failed")).toBe(true);
      });

      test("key missing from the configuration", async () => {
        await store.create(sampleFields(), "old-key");
        const withoutK1 = new EncryptingIntegrationStore(await location.openPlain(), cipherOf(keyEntry("k2")));

        try {
          const read = await withoutK1.get("old-key");

          expect(read?.unreadableSecrets).toEqual([
            { field: "api_key", keyId: "k1", failure: "unknown_key" },
            { field: "secret_key", keyId: "k1", failure: "unknown_key" },
          ]);
        } finally {
          await withoutK1.close();
        }
      });

      test("replaceSecrets only matches the values read", async () => {
        await plain.create(sampleFields({ apiKey: "a1", secretKey: "s1" }), "cas");
        const before = await location.rawRow("cas");

        const stale = await plain.replaceSecrets("cas", { apiKey: "a0", secretKey: "s1" }, { apiKey: "a2", secretKey: "s2" });
        const matching = await plain.replaceSecrets("cas", { apiKey: "a1", secretKey: "s1" }, { apiKey: "a2", secretKey: "s2" });
        const missing = await plain.replaceSecrets("nope", { apiKey: "a1", secretKey: "s1" }, { apiKey: "a2", secretKey: "s2" });
        const after = await location.rawRow("cas");

        expect(stale).toBe(false);
        expect(matching).toBe(true);
        expect(missing).toBe(false);
        expect(after).toMatchObject({ api_key: "a2", secret_key: "s2" });
        expect(after?.version).toBe(before?.version);
        expect(after?.update_time).toBe(before?.update_time);
      });
    });
  });
});
