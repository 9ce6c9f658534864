import type { Compilable, CompiledQuery, Kysely, QueryResult } from "kysely";

/**
 * Prefix of the stand-in values that mark a template's parameters while it
 * compiles. The NUL character keeps it apart from any literal of a query.
 */
const MARKER_PREFIX = "\u0000query-template-parameter:";

/** One parameter of the compiled query: a named value given at each run, or a literal of the query. */
type Slot<Name extends string> = { name: Name } | { literal: unknown };

/**
 * A query that Kysely builds and compiles once, then runs many times with
 * new values for its named parameters.
 *
 * Building and compiling a query with Kysely costs more CPU than SQLite
 * takes to run a small statement: a profile of sends with idempotency keys
 * put it at about a tenth of their CPU time. A template keeps the SQL text
 * and the order of its parameters, so each run only fills in the values.
 * The dialect still writes the SQL, so one template serves SQLite and
 * PostgreSQL alike.
 *
 * `build` receives `param(name)`, which stands for the value of `name` at
 * each run. It returns a string, which suits the text columns of the store.
 * A parameter must go where Kysely passes a value to the driver, never where
 * it reads the string itself, as in an identifier.
 */
export class QueryTemplate<Name extends string, Row = unknown> {
  readonly #db: Kysely<any>;
  readonly #compiled: CompiledQuery<Row>;
  readonly #slots: readonly Slot<Name>[];

  /** @throws Error when the compiled query does not use every name that `build` asked for. */
  constructor(db: Kysely<any>, build: (param: (name: Name) => string) => Compilable<Row>) {
    const names = new Set<Name>();
    const compiled = build((name) => {
      names.add(name);
      return `${MARKER_PREFIX}${name}`;
    }).compile();

    const slots = compiled.parameters.map((value): Slot<Name> => {
      if (typeof value === "string" && value.startsWith(MARKER_PREFIX)) {
        return { name: value.slice(MARKER_PREFIX.length) as Name };
      }
      return { literal: value };
    });
    const unused = [...names].filter((name) => !slots.some((slot) => "name" in slot && slot.name === name));
    if (unused.length > 0) {
      throw new Error(`query template does not pass parameter ${unused.join(", ")} to its SQL: ${compiled.sql}`);
    }

    this.#db = db;
    this.#compiled = compiled;
    this.#slots = slots;
  }

  /** Runs the query with `values` in place of its parameters. */
  execute(values: Readonly<Record<Name, unknown>>): Promise<QueryResult<Row>> {
    const parameters = this.#slots.map((slot) => ("name" in slot ? values[slot.name] : slot.literal));
    return this.#db.executeQuery({ ...this.#compiled, parameters });
  }
}
