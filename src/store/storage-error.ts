/** Maximum length of the message in a summary, in characters. */
const MAX_MESSAGE_LENGTH = 300;

/** The parts of a database error that are safe to log. */
export interface DatabaseErrorSummary {
  name: string;
  /** SQLSTATE (`23505`), SQLite result code (`SQLITE_BUSY`) or Node code (`ECONNREFUSED`). */
  code?: string;
  message: string;
}

/**
 * Reduces a database or driver error to its name, code and message.
 *
 * Log this instead of the error itself, because a pino `err` field
 * serialises every property. pg errors carry `detail` and `where` text that
 * can contain stored values, and pg-pool attaches the client (`err.client`)
 * to errors of idle connections. Messages longer than 300 characters are cut.
 */
export function summarizeDatabaseError(error: unknown): DatabaseErrorSummary {
  if (!(error instanceof Error)) {
    return { name: typeof error, message: "non-Error value thrown" };
  }

  // Node reports a failed connection to a host name with several addresses
  // as an AggregateError with an empty message. Its first error gives the cause.
  if (error instanceof AggregateError && error.message === "" && error.errors.length > 0) {
    return summarizeDatabaseError(error.errors[0]);
  }

  const code = (error as { code?: unknown }).code;
  const message =
    error.message.length > MAX_MESSAGE_LENGTH
      ? `${error.message.slice(0, MAX_MESSAGE_LENGTH)}…`
      : error.message;

  return typeof code === "string" ? { name: error.name, code, message } : { name: error.name, message };
}

/**
 * SQLite result codes of a statement that the database refused as written:
 * a constraint, a type or a value out of range, or SQL that does not parse.
 * The store's checks should have prevented each of them. Extended codes
 * (`SQLITE_CONSTRAINT_UNIQUE`) count under their primary code.
 */
const REJECTED_SQLITE_CODES: ReadonlySet<string> = new Set([
  "SQLITE_CONSTRAINT",
  "SQLITE_MISMATCH",
  "SQLITE_RANGE",
  "SQLITE_TOOBIG",
  "SQLITE_MISUSE",
  "SQLITE_ERROR",
]);

/** SQLSTATE classes of a statement that PostgreSQL refused as written: 22 data exception, 23 integrity constraint violation, 42 syntax error or access rule violation. */
const REJECTED_SQLSTATE_CLASSES: ReadonlySet<string> = new Set(["22", "23", "42"]);

/**
 * Start of the SQLITE_ERROR message of a table that a change outside the
 * service removed, like PostgreSQL's 42P01.
 */
const OUTSIDE_SQLITE_MESSAGE = /^no such table: /;

/** SQLSTATEs of class 42 that a change outside the service causes: a revoked privilege, a dropped table or schema. */
const OUTSIDE_SQLSTATES: ReadonlySet<string> = new Set(["42501", "42P01"]);

/**
 * Returns whether a driver code means that the database refused the
 * statement itself, which is a bug of the service, rather than that the
 * database could not run it (a lost connection, a locked or read-only file,
 * a full disk).
 */
function isRejectedStatement(code: string | undefined, message: string): boolean {
  if (code === undefined) {
    return false;
  }
  if (code === "SQLITE_ERROR" && OUTSIDE_SQLITE_MESSAGE.test(message)) {
    return false;
  }
  if (code.startsWith("SQLITE_")) {
    return REJECTED_SQLITE_CODES.has(primarySqliteCode(code));
  }
  return /^[0-9A-Z]{5}$/.test(code) && REJECTED_SQLSTATE_CLASSES.has(code.slice(0, 2)) && !OUTSIDE_SQLSTATES.has(code);
}

/**
 * Driver codes of a database whose stored data is damaged: SQLite's corrupt
 * database image or a file that is not a database, PostgreSQL's
 * `data_corrupted` and `index_corrupted`. Extended SQLite codes
 * (`SQLITE_CORRUPT_INDEX`) count under their primary code.
 */
const CORRUPTION_CODES: ReadonlySet<string> = new Set(["SQLITE_CORRUPT", "SQLITE_NOTADB", "XX001", "XX002"]);

function isCorruption(code: string | undefined): boolean {
  if (code === undefined) {
    return false;
  }
  return CORRUPTION_CODES.has(code.startsWith("SQLITE_") ? primarySqliteCode(code) : code);
}

/** Returns an SQLite result code without its extension, such as `SQLITE_CONSTRAINT` for `SQLITE_CONSTRAINT_UNIQUE`. */
function primarySqliteCode(code: string): string {
  return /^SQLITE_[A-Z]+/.exec(code)?.[0] ?? code;
}

/** Returns whether a driver code is a foreign-key violation, on SQLite or PostgreSQL. */
export function isForeignKeyViolation(code: string | undefined): boolean {
  return code === "SQLITE_CONSTRAINT_FOREIGNKEY" || code === "23503";
}

/**
 * A storage operation failed, most often for a reason the caller cannot
 * fix, such as a lost connection or a locked database file.
 * {@link statementRejected} marks the rarer failures that are bugs of the
 * service, where the database rejected the statement itself.
 *
 * It keeps only the summary of the driver's error, not the error itself, so
 * logging it never serialises the driver's detail fields or client objects.
 */
export class StorageError extends Error {
  override readonly name = "StorageError";
  /** Driver code of the underlying error, when it had one. */
  readonly code: string | undefined;
  /** Message of the underlying error, cut as in {@link summarizeDatabaseError}. */
  readonly driverMessage: string;
  /**
   * True when the database refused the statement as written (a constraint,
   * a type, SQL syntax). The service should have prevented that. False when
   * the database could not run it, for example over a lost connection.
   */
  readonly statementRejected: boolean;
  /** True when the database reported its stored data as damaged, which only a restore repairs. */
  readonly dataCorrupted: boolean;

  constructor(
    /** Store operation that failed, for example `create`. */
    readonly operation: string,
    error: unknown,
    /** Database the operation ran on, as the store describes it, when the message should name it. */
    readonly target?: string,
  ) {
    const summary = summarizeDatabaseError(error);
    const on = target === undefined ? "" : ` on ${target}`;
    const code = summary.code === undefined ? "" : ` (${summary.code})`;
    super(`storage ${operation} failed${on}${code}: ${summary.message}`);
    this.code = summary.code;
    this.driverMessage = summary.message;
    this.statementRejected = isRejectedStatement(summary.code, summary.message);
    this.dataCorrupted = isCorruption(summary.code);
  }
}

/** Runs one statement and replaces any driver error with a StorageError that is safe to log. */
export async function runStatement<T>(operation: string, statement: () => Promise<T>): Promise<T> {
  try {
    return await statement();
  } catch (error) {
    throw new StorageError(operation, error);
  }
}
