/** HTTP token characters (RFC 9110), the only ones allowed in a header name. */
const HTTP_TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** Tab, visible ASCII, space and obsolete Latin-1 text: the characters undici sends in a header value. */
const HEADER_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

/** Header that carries a send's idempotency key to the gateway. */
export const IDEMPOTENCY_KEY_HEADER = "Idempotency-Key";

/**
 * Kind of a header that the service sets on gateway requests itself.
 * A `framing` header frames the request or controls the connection, and is
 * on every request. The `idempotency_key` header is on the SMS requests of a
 * send with an idempotency key.
 */
export type ServiceHeaderKind = "framing" | "idempotency_key";

/**
 * Headers that the service and its HTTP client set on gateway requests, in
 * lower case. Both the integration checks and the passthrough checks read
 * this one list, so they cannot drift apart. Setting a framing header by
 * hand would corrupt the request or smuggle a second one. So neither an
 * integration nor a caller may set one, and names starting with `proxy-`
 * count too.
 */
const SERVICE_HEADERS: ReadonlyMap<string, ServiceHeaderKind> = new Map([
  ["host", "framing"],
  ["content-length", "framing"],
  ["content-type", "framing"],
  ["transfer-encoding", "framing"],
  ["connection", "framing"],
  ["keep-alive", "framing"],
  ["upgrade", "framing"],
  ["te", "framing"],
  ["trailer", "framing"],
  ["expect", "framing"],
  [IDEMPOTENCY_KEY_HEADER.toLowerCase(), "idempotency_key"],
]);

/** Returns which kind of header the service sets under `name` (any case), or null for a name it leaves free. */
export function serviceHeaderKind(name: string): ServiceHeaderKind | null {
  const lowerName = name.toLowerCase();
  if (lowerName.startsWith("proxy-")) {
    return "framing";
  }
  return SERVICE_HEADERS.get(lowerName) ?? null;
}

/** Tells whether a text is a valid HTTP header name. */
export function isHttpToken(text: string): boolean {
  return HTTP_TOKEN.test(text);
}

/** Tells whether a text can be sent as an HTTP header value. */
export function isHeaderValue(text: string): boolean {
  return HEADER_VALUE.test(text);
}

/** Tells whether a header name (any case) belongs to the HTTP client. */
export function isFramingHeader(name: string): boolean {
  return serviceHeaderKind(name) === "framing";
}

/** Tells whether a header name (any case) is the one that carries a send's idempotency key. */
export function isIdempotencyKeyHeader(name: string): boolean {
  return serviceHeaderKind(name) === "idempotency_key";
}

/**
 * Returns why `name` cannot name a header of an integration, which carries
 * a credential, or null when it can.
 */
export function headerNameProblem(name: string): string | null {
  if (!isHttpToken(name)) {
    return `"${name}" is not a valid header name: use letters, digits and !#$%&'*+-.^_\`|~ only`;
  }
  switch (serviceHeaderKind(name)) {
    case "framing":
      return `"${name}" is set by the HTTP client and cannot be configured`;
    case "idempotency_key":
      return (
        `"${name}" is set by the service to carry the idempotency_key of a send, so it cannot carry a credential: ` +
        "use the header name that the gateway expects for this credential or token"
      );
    case null:
      return null;
  }
}

/** Returns why `value` cannot be a header value, or null when it can. */
export function headerValueProblem(value: string): string | null {
  if (!isHeaderValue(value)) {
    return "contains CR, LF, NUL, another control character or a character above U+00FF, which a header value cannot carry";
  }
  return null;
}
