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
 * A storage operation failed for a reason the caller cannot fix, such as a
 * lost connection or a locked database file.
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
  }
}
