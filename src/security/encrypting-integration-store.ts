import type { IntegrationFields } from "../domain/integration.js";
import { newIntegrationId } from "../store/integration-id.js";
import { assertStorable } from "../store/integration-row.js";
import type { IntegrationStore, ListOptions, ReadVersion, StoredIntegration } from "../store/integration-store.js";
import { SecretDecryptionError, type SecretCipher, type SecretField } from "./secret-cipher.js";
import type { UnreadableSecret } from "./unreadable-secrets.js";

/** Test seams of {@link EncryptingIntegrationStore}; production uses the defaults. */
export interface EncryptingIntegrationStoreOptions {
  /** Id generator for creates without an id; defaults to {@link newIntegrationId}. */
  newId?: () => string;
}

/**
 * An integration store that encrypts `apiKey` and `secretKey` on the way in
 * and decrypts them on the way out, around a store that keeps them as given.
 *
 * Plain-text secrets never reach the wrapped store, so they never reach the
 * database. Each ciphertext is bound to its integration id and column (see
 * {@link SecretCipher}). A secret that cannot be decrypted does not fail the
 * read, because listing and reconfiguring the integration must still work:
 * it reads as "" and is named in `unreadableSecrets`, and sending checks
 * that list.
 */
export class EncryptingIntegrationStore implements IntegrationStore {
  readonly #inner: IntegrationStore;
  readonly #cipher: SecretCipher;
  readonly #newId: () => string;

  /** Takes ownership of `inner`: {@link close} closes it. */
  constructor(inner: IntegrationStore, cipher: SecretCipher, options: EncryptingIntegrationStoreOptions = {}) {
    this.#inner = inner;
    this.#cipher = cipher;
    this.#newId = options.newId ?? newIntegrationId;
  }

  async create(fields: IntegrationFields, id?: string): Promise<StoredIntegration> {
    // The id is part of the ciphertext's authenticated data, so it is chosen here rather than by the wrapped store.
    const rowId = id === undefined || id === "" ? this.#newId() : id;
    // Ciphertext never contains U+0000, so the plain text is checked here, as the wrapped store would check it.
    assertStorable(fields, rowId);

    const created = await this.#inner.create(this.#encrypted(rowId, fields), rowId);
    return { ...created, apiKey: fields.apiKey, secretKey: fields.secretKey };
  }

  async get(id: string): Promise<StoredIntegration | null> {
    const stored = await this.#inner.get(id);
    return stored === null ? null : this.#decrypted(stored);
  }

  async update(id: string, fields: IntegrationFields, read?: ReadVersion): Promise<StoredIntegration> {
    assertStorable(fields);

    const updated = await this.#inner.update(id, this.#encrypted(id, fields), read);
    return { ...updated, apiKey: fields.apiKey, secretKey: fields.secretKey };
  }

  async list(options: ListOptions): Promise<StoredIntegration[]> {
    const page = await this.#inner.list(options);
    return page.map((stored) => this.#decrypted(stored));
  }

  delete(id: string): Promise<boolean> {
    return this.#inner.delete(id);
  }

  ping(): Promise<void> {
    return this.#inner.ping();
  }

  close(): Promise<void> {
    return this.#inner.close();
  }

  #encrypted(integrationId: string, fields: IntegrationFields): IntegrationFields {
    return {
      ...fields,
      apiKey: this.#cipher.encrypt(fields.apiKey, { integrationId, field: "api_key" }),
      secretKey: this.#cipher.encrypt(fields.secretKey, { integrationId, field: "secret_key" }),
    };
  }

  #decrypted(stored: StoredIntegration): StoredIntegration {
    const unreadable: UnreadableSecret[] = [];
    const read = (value: string, field: SecretField): string => {
      try {
        return this.#cipher.decrypt(value, { integrationId: stored.id, field });
      } catch (error) {
        if (!(error instanceof SecretDecryptionError)) {
          throw error;
        }
        unreadable.push({ field, keyId: error.keyId, failure: error.failure });
        return "";
      }
    };

    // Copied first and changed after. On Node 20, a spread that overrode the secrets gave each
    // copy a hidden class of its own once the cache froze it: about half a kilobyte more per
    // integration, and megamorphic property reads in the send path.
    const integration: StoredIntegration = Object.assign({}, stored);
    integration.apiKey = read(stored.apiKey, "api_key");
    integration.secretKey = read(stored.secretKey, "secret_key");
    if (unreadable.length > 0) {
      integration.unreadableSecrets = unreadable;
    }
    return integration;
  }
}
