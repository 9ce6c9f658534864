/**
 * Returns a copy of `base` with the fields of `extra` set on it, as
 * `{ ...base, ...extra }` would.
 *
 * NOTE: on Node 20, an object literal that starts with a spread and then adds
 * a field builds a new hidden class for every object once V8 has run it a few
 * times. A literal made of two spreads does the same. V8's IC log then showed
 * every property read of such objects missing its inline cache.
 * `Object.assign` onto an empty object reuses the hidden classes. The service
 * copies with this on the path of every send, and elsewhere a spread is fine.
 */
export function copyWith<Base extends object, Extra extends object>(base: Base, extra: Extra): Omit<Base, keyof Extra> & Extra {
  return Object.assign({}, base, extra);
}
