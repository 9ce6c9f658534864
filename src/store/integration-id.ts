import { randomBytes } from "node:crypto";

/** Crockford's base32 alphabet in lowercase: no i, l, o or u. */
const CROCKFORD_BASE32 = "0123456789abcdefghjkmnpqrstvwxyz";

const RANDOM_BITS = 80n;
const RANDOM_LIMIT = 1n << RANDOM_BITS;
/** 48-bit millisecond time plus 80 random bits, written as 26 base32 characters (130 bits). */
const ENCODED_LENGTH = 26;

/** Prefix of the ids the store assigns. */
export const INTEGRATION_ID_PREFIX = "int_";

function randomPart(): bigint {
  return BigInt(`0x${randomBytes(10).toString("hex")}`);
}

function encodeBase32(value: bigint): string {
  let text = "";
  for (let i = 0; i < ENCODED_LENGTH; i++) {
    text = CROCKFORD_BASE32[Number(value & 31n)] + text;
    value >>= 5n;
  }
  return text;
}

/**
 * Creates a generator of ULID-style ids (`int_` and 26 lowercase Crockford
 * base32 characters: a 48-bit millisecond time, then 80 random bits).
 *
 * Ids of one generator sort in the order it made them: within one
 * millisecond, or when the clock steps back, the generator keeps the last
 * time and adds one to the last random part. Ids from different processes
 * are ordered by time only down to the millisecond.
 */
export function createIdGenerator(now: () => number = Date.now): () => string {
  let lastTime = -1;
  let lastRandom = 0n;

  return () => {
    const time = now();
    if (time > lastTime) {
      lastTime = time;
      lastRandom = randomPart();
    } else {
      lastRandom += 1n;
      if (lastRandom >= RANDOM_LIMIT) {
        // Reaching this takes about 2^79 ids in one millisecond. Moving on to
        // the next millisecond keeps the ids increasing.
        lastTime += 1;
        lastRandom = randomPart();
      }
    }

    const value = (BigInt(lastTime) << RANDOM_BITS) | lastRandom;
    return INTEGRATION_ID_PREFIX + encodeBase32(value);
  };
}

/**
 * Returns a new time-ordered integration id; ids from this process sort in
 * the order they were made.
 */
export const newIntegrationId: () => string = createIdGenerator();
