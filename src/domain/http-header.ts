/** HTTP token characters (RFC 9110), the only ones allowed in a header name. */
const HTTP_TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** Tab, visible ASCII, space and obsolete Latin-1 text: the characters undici sends in a header value. */
const HEADER_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

/**
 * Headers that the HTTP client sets to frame the request or that control the
 * connection. Setting one by hand would corrupt the request or smuggle a
 * second one, so neither an integration nor a caller may set them. Names
 * starting with `proxy-` count too.
 */
const FRAMING_HEADERS = new Set([
  "host",
  "content-length",
  "content-type",
  "transfer-encoding",
  "connection",
  "keep-alive",
  "upgrade",
  "te",
  "trailer",
  "expect",
]);

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
  const lowerName = name.toLowerCase();
  return FRAMING_HEADERS.has(lowerName) || lowerName.startsWith("proxy-");
}

/** Returns why `name` cannot be a header name we send, or null when it can. */
export function headerNameProblem(name: string): string | null {
  if (!isHttpToken(name)) {
    return `"${name}" is not a valid header name: use letters, digits and !#$%&'*+-.^_\`|~ only`;
  }
  if (isFramingHeader(name)) {
    return `"${name}" is set by the HTTP client and cannot be configured`;
  }
  return null;
}

/** Returns why `value` cannot be a header value, or null when it can. */
export function headerValueProblem(value: string): string | null {
  if (!isHeaderValue(value)) {
    return "contains CR, LF, NUL, another control character or a character above U+00FF, which a header value cannot carry";
  }
  return null;
}
