/**
 * Finds the flag of `known` that `name` most likely misspells, or undefined
 * when none is close. Close means at most one edit per three letters of
 * `name` (at least one edit), where an edit inserts, deletes or replaces a
 * letter, or swaps two adjacent letters. Leading dashes and letter case are
 * ignored, so `-port` and `--PORT` both suggest `--port`. On a tie, the flag
 * listed first wins.
 */
export function closestFlag(name: string, known: Iterable<string>): string | undefined {
  const bare = bareFlag(name);
  if (bare === "") {
    return undefined;
  }
  const maxEdits = Math.max(1, Math.floor(bare.length / 3));

  let best: string | undefined;
  let bestEdits = maxEdits + 1;
  for (const flag of known) {
    const edits = editDistance(bare, bareFlag(flag));
    if (edits < bestEdits) {
      best = flag;
      bestEdits = edits;
    }
  }
  return best;
}

function bareFlag(flag: string): string {
  return flag.replace(/^-+/, "").toLowerCase();
}

/**
 * Returns the optimal string alignment distance between two strings: the
 * Levenshtein distance, with a swap of two adjacent letters counted as one
 * edit.
 */
export function editDistance(a: string, b: string): number {
  // rows[i][j] is the distance between the first i letters of a and the first j letters of b.
  const rows: number[][] = [];
  for (let i = 0; i <= a.length; i++) {
    rows.push([i]);
  }
  for (let j = 1; j <= b.length; j++) {
    rows[0]![j] = j;
  }

  for (let i = 1; i <= a.length; i++) {
    const row = rows[i]!;
    const above = rows[i - 1]!;
    for (let j = 1; j <= b.length; j++) {
      const replaceCost = a[i - 1] === b[j - 1] ? 0 : 1;
      let distance = Math.min(above[j]! + 1, row[j - 1]! + 1, above[j - 1]! + replaceCost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        distance = Math.min(distance, rows[i - 2]![j - 2]! + 1);
      }
      row[j] = distance;
    }
  }
  return rows[a.length]![b.length]!;
}
