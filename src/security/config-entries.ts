/**
 * Splits the text of a key setting or key file into entries: lines starting
 * with `#` are comments, and the remaining lines are split at commas.
 * Surrounding white space and empty entries are dropped.
 */
export function splitConfigEntries(text: string): string[] {
  return text
    .split(/\r?\n/)
    .filter((line) => !line.trim().startsWith("#"))
    .flatMap((line) => line.split(","))
    .map((entry) => entry.trim())
    .filter((entry) => entry !== "");
}
