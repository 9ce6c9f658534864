/**
 * Parsing of the send date that a gateway returns, in the formats gateways
 * use: ISO 8601, RFC 2822 and Unix epoch time.
 */

/**
 * Epoch values below this are seconds, the others milliseconds. 1e11 seconds
 * is the year 5138, and 1e11 milliseconds is March 1973, so a real send date
 * in either unit falls on the right side.
 */
const EPOCH_SECONDS_BELOW = 1e11;

/** Epoch values from here on are rejected. 1e14 milliseconds is the year 5138. */
const EPOCH_MILLISECONDS_BELOW = 1e14;

/**
 * First and last millisecond that a google.protobuf.Timestamp can carry:
 * 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999Z. protobuf-es 2.13 fails
 * to encode a Timestamp outside them as JSON.
 */
const TIMESTAMP_MIN_MS = -62_135_596_800_000;
const TIMESTAMP_MAX_MS = 253_402_300_799_999;

const DECIMAL = /^[0-9]+(?:\.[0-9]+)?$/;

const ISO_8601 =
  /^(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?(?:([Zz])|([+-])(\d{2}):?(\d{2}))?)?$/;

const RFC_2822 = new RegExp(
  "^(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun),\\s*)?" +
    "(\\d{1,2})\\s+(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)\\s+(\\d{2,4})\\s+" +
    "(\\d{2}):(\\d{2})(?::(\\d{2}))?\\s+" +
    "([+-]\\d{4}|UT|GMT|Z|[ECMP][SD]T)$",
  "i",
);

const MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];

/** Offsets in minutes of the zone names that RFC 2822 allows. */
const ZONE_OFFSET_MINUTES: Record<string, number> = {
  ut: 0,
  gmt: 0,
  z: 0,
  est: -300,
  edt: -240,
  cst: -360,
  cdt: -300,
  mst: -420,
  mdt: -360,
  pst: -480,
  pdt: -420,
};

/**
 * Parses a gateway date given as text: ISO 8601, RFC 2822, or epoch seconds
 * or milliseconds as decimal digits.
 *
 * An ISO 8601 date-time without an offset is read as UTC, because the
 * server's own time zone is unrelated to the gateway's. Epoch values below
 * 1e11 are seconds and the others milliseconds, up to 1e14. Returns
 * `undefined` when the text matches none of these formats or names a day
 * that does not exist.
 */
export function parseGatewayDate(text: string): Date | undefined {
  const trimmed = text.trim();
  if (DECIMAL.test(trimmed)) {
    return parseEpoch(Number(trimmed));
  }
  return parseIso8601(trimmed) ?? parseRfc2822(trimmed);
}

/**
 * Tells whether a date lies in the years 1 to 9999, the range of a
 * google.protobuf.Timestamp. A date parsed from text can fall outside it,
 * such as the year 0 or a leap second on 9999-12-31.
 */
export function isInTimestampRange(date: Date): boolean {
  const millis = date.getTime();
  return millis >= TIMESTAMP_MIN_MS && millis <= TIMESTAMP_MAX_MS;
}

/**
 * Converts a Unix epoch value to a date, reading values below 1e11 as
 * seconds and the others as milliseconds.
 *
 * Returns `undefined` for negative, non-finite or implausibly large values
 * (1e14 and above).
 */
export function parseEpoch(value: number): Date | undefined {
  if (!Number.isFinite(value) || value < 0 || value >= EPOCH_MILLISECONDS_BELOW) {
    return undefined;
  }
  const millis = value < EPOCH_SECONDS_BELOW ? value * 1000 : value;
  return new Date(Math.trunc(millis));
}

/** Parses an ISO 8601 calendar date, with or without time and offset. */
export function parseIso8601(text: string): Date | undefined {
  const match = ISO_8601.exec(text);
  if (match === null) {
    return undefined;
  }
  const [, year, month, day, hour, minute, second, fraction, zulu, sign, offsetHours, offsetMinutes] = match;
  const millis = (fraction ?? "").padEnd(3, "0").slice(0, 3);
  const local = utcMillis(
    Number(year),
    Number(month),
    Number(day),
    Number(hour ?? 0),
    Number(minute ?? 0),
    Number(second ?? 0),
    Number(millis),
  );
  if (local === undefined) {
    return undefined;
  }
  if (zulu !== undefined || sign === undefined) {
    return new Date(local);
  }
  const offset = offsetMinutesOf(sign, Number(offsetHours), Number(offsetMinutes));
  return offset === undefined ? undefined : new Date(local - offset * 60_000);
}

/**
 * Parses an RFC 2822 date such as `Fri, 02 Jan 2026 03:04:05 +0000`.
 *
 * HTTP dates (`Sun, 06 Nov 1994 08:49:37 GMT`) are a subset. The weekday is
 * optional and not checked against the date. Two-digit years below 50 are
 * 20xx and the others 19xx, as RFC 2822 says for its obsolete syntax.
 */
export function parseRfc2822(text: string): Date | undefined {
  const match = RFC_2822.exec(text);
  if (match === null) {
    return undefined;
  }
  const [, day, monthName, yearText, hour, minute, second, zone] = match as unknown as string[];
  const month = MONTHS.indexOf(monthName!.toLowerCase()) + 1;
  let year = Number(yearText);
  if (yearText!.length === 2) {
    year += year < 50 ? 2000 : 1900;
  } else if (yearText!.length === 3) {
    year += 1900;
  }
  const local = utcMillis(year, month, Number(day), Number(hour), Number(minute), Number(second ?? 0), 0);
  if (local === undefined) {
    return undefined;
  }

  let offset: number | undefined;
  const zoneText = zone!;
  if (zoneText.startsWith("+") || zoneText.startsWith("-")) {
    offset = offsetMinutesOf(zoneText[0]!, Number(zoneText.slice(1, 3)), Number(zoneText.slice(3, 5)));
  } else {
    offset = ZONE_OFFSET_MINUTES[zoneText.toLowerCase()];
  }
  return offset === undefined ? undefined : new Date(local - offset * 60_000);
}

function offsetMinutesOf(sign: string, hours: number, minutes: number): number | undefined {
  if (hours > 23 || minutes > 59) {
    return undefined;
  }
  const total = hours * 60 + minutes;
  return sign === "-" ? -total : total;
}

/**
 * Returns the epoch milliseconds of a UTC date and time, or `undefined` when
 * a field is out of range (February 30, hour 24). A second of 60, a leap
 * second, rolls over into the next minute.
 */
function utcMillis(
  year: number,
  month: number,
  day: number,
  hour: number,
  minute: number,
  second: number,
  millisecond: number,
): number | undefined {
  if (month < 1 || month > 12 || day < 1 || hour > 23 || minute > 59 || second > 60) {
    return undefined;
  }
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day);
  // setUTCFullYear rolls February 30 over into March, so a changed day means an invalid date.
  if (date.getUTCDate() !== day) {
    return undefined;
  }
  date.setUTCHours(hour, minute, second, millisecond);
  return date.getTime();
}
