import { ConfigError } from "./load-config.js";

/** Plain words for the errors a file or folder named by a setting gives on a fresh set-up, by error code. */
const PATH_PROBLEMS: Readonly<Record<string, string>> = {
  ENOENT: "not found",
  EACCES: "permission denied",
  EPERM: "permission denied",
  EISDIR: "it is a folder, not a file",
  ENOTDIR: "a part of the path is a file, not a folder",
  EROFS: "the file system is read-only",
  ENOSPC: "no space left on the device",
  ELOOP: "too many symbolic links",
  ENAMETOOLONG: "the path is too long",
  SQLITE_CANTOPEN: "SQLite cannot open or create its file there",
  SQLITE_READONLY: "the SQLite file is read-only",
  SQLITE_READONLY_DIRECTORY: "the folder is read-only, so SQLite cannot create its -wal and -shm files",
};

/**
 * Describes why a file or folder could not be used, in plain words followed
 * by the error code, such as "permission denied (EACCES)". An error with an
 * unknown code is described by its message.
 */
export function describePathProblem(error: unknown): string {
  const code = (error as { code?: unknown } | undefined)?.code;
  const words = typeof code === "string" ? PATH_PROBLEMS[code] : undefined;
  if (words !== undefined) {
    return `${words} (${String(code)})`;
  }
  return error instanceof Error ? error.message : String(error);
}

/**
 * Returns the start-up error for a file that a setting names and that
 * cannot be read: the setting as the operator gave it, the path, and why.
 */
export function unreadableFileError(setting: string, file: string, error: unknown, expected: string): ConfigError {
  return new ConfigError(
    `${setting} ${file} cannot be read: ${describePathProblem(error)}; expected ${expected}, readable by the user that runs the service.`,
  );
}

/** Error codes that file permissions cause, which the owner of a folder can fix. */
const PERMISSION_CODES: ReadonlySet<string> = new Set([
  "EACCES",
  "EPERM",
  "SQLITE_CANTOPEN",
  "SQLITE_READONLY",
  "SQLITE_READONLY_DIRECTORY",
]);

/**
 * Returns the start-up error for a folder that a setting names and that the
 * service cannot write: the setting as the operator gave it, the folder,
 * what failed, why, and the fix.
 */
export function unwritableFolderError(setting: string, folder: string, action: string, error: unknown): ConfigError {
  const code = (error as { code?: unknown } | undefined)?.code;
  const fix = PERMISSION_CODES.has(String(code))
    ? `make the folder writable by the user that runs the service, or set ${setting} to a folder it can write`
    : `set ${setting} to a folder that the service can create and write`;
  return new ConfigError(`${setting} ${folder}: cannot ${action}: ${describePathProblem(error)}; ${fix}.`);
}

/**
 * Returns the start-up error for a file in a folder that a setting names,
 * which the service can read but not write: the setting as the operator
 * gave it, the folder, the file, why, and the fix. `companions` lists the
 * files beside it that need the same permission, such as SQLite's `-wal`.
 */
export function unwritableFileError(setting: string, folder: string, file: string, companions: string, error: unknown): ConfigError {
  return new ConfigError(
    `${setting} ${folder}: cannot write ${file}: ${describePathProblem(error)}; ` +
      `make the file, and ${companions}, writable by the user that runs the service.`,
  );
}
