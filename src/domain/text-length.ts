/**
 * Tests whether `text` has more than `max` code points, so that an emoji
 * counts once, as a person would count it. A string no longer than `max` in
 * UTF-16 units is within the limit without being counted.
 */
export function longerThan(text: string, max: number): boolean {
  return text.length > max && codePointCount(text) > max;
}

function codePointCount(text: string): number {
  let count = 0;
  for (const _ of text) {
    count++;
  }
  return count;
}
