import { isJsonObject } from "./json-value.js";

/** The result of looking up a dot path in parsed JSON. */
export type PathLookup = { found: true; value: unknown } | { found: false };

const ARRAY_INDEX = /^(?:0|[1-9][0-9]*)$/;

/**
 * Looks up a dot path such as `data.id` or `messages.0.id` in parsed JSON.
 *
 * The path is split on `.`, so a key may contain any other character,
 * hyphens included. A segment of decimal digits indexes an array, and on an
 * object it is an ordinary key. Only own properties count, so `constructor`
 * or `__proto__` never resolve to something inherited.
 */
export function readJsonPath(root: unknown, path: string): PathLookup {
  let current = root;
  for (const segment of path.split(".")) {
    if (Array.isArray(current)) {
      if (!ARRAY_INDEX.test(segment)) {
        return { found: false };
      }
      const index = Number(segment);
      if (index >= current.length) {
        return { found: false };
      }
      current = current[index];
    } else if (isJsonObject(current)) {
      if (!Object.hasOwn(current, segment)) {
        return { found: false };
      }
      current = current[segment];
    } else {
      return { found: false };
    }
  }
  return { found: true, value: current };
}
