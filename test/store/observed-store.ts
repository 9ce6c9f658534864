import type { IntegrationFields } from "../../src/domain/integration.js";
import type { IntegrationStore, ListOptions, ReadVersion, StoredIntegration } from "../../src/store/integration-store.js";

/** A real store that counts its reads and can hold them until the test lets them go. */
export class ObservedStore implements IntegrationStore {
  reads = 0;
  private gate: Promise<void> | undefined;

  constructor(private readonly inner: IntegrationStore) {}

  /** Makes reads wait, after reading the row, until the returned function is called. */
  holdReads(): () => void {
    let release!: () => void;
    this.gate = new Promise((resolve) => (release = resolve));
    return () => {
      this.gate = undefined;
      release();
    };
  }

  async get(id: string): Promise<StoredIntegration | null> {
    this.reads++;
    const found = await this.inner.get(id);
    await this.gate;
    return found;
  }

  create(fields: IntegrationFields, id?: string) {
    return this.inner.create(fields, id);
  }

  update(id: string, fields: IntegrationFields, read?: ReadVersion) {
    return this.inner.update(id, fields, read);
  }

  list(options: ListOptions) {
    return this.inner.list(options);
  }

  delete(id: string) {
    return this.inner.delete(id);
  }

  ping() {
    return this.inner.ping();
  }

  close() {
    return this.inner.close();
  }
}
