/**
 * The PostgreSQL schema that the store was asked to open does not exist,
 * and the caller asked not to create it.
 */
export class MissingSchemaError extends Error {
  override readonly name = "MissingSchemaError";

  constructor(
    /** The schema name as given, case-sensitive. */
    readonly schema: string,
  ) {
    super(`PostgreSQL schema "${schema}" does not exist`);
  }
}
