import { mkdir } from "node:fs/promises";
import path from "node:path";

/**
 * Creates a directory and its missing parents, each with `mode`, like
 * `mkdir -p`. Does nothing when the directory exists.
 *
 * NOTE: Node's own `mkdir(dir, { recursive: true })` never returns for a
 * path under /proc on Linux (seen with Node 20.20): procfs returns ENOENT
 * for a child that cannot exist, so Node creates the parent, which exists,
 * and tries again forever. Here an ENOENT after the parent exists is final.
 *
 * @throws NodeJS.ErrnoException from the `mkdir` that failed, for example
 *   ENOENT, EACCES or ENOTDIR.
 */
export async function makeDirectory(directory: string, mode: number): Promise<void> {
  try {
    await mkdir(directory, { mode });
    return;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "EEXIST") {
      return;
    }
    const parent = path.dirname(directory);
    if (code !== "ENOENT" || parent === directory) {
      throw error;
    }
  }

  await makeDirectory(path.dirname(directory), mode);
  try {
    await mkdir(directory, { mode });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") {
      throw error;
    }
  }
}
