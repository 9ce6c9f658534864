/** RFC 9110 token characters, the only ones allowed in a header name. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** CR, LF and NUL would split or end a header line. */
const LINE_BREAK_OR_NUL = /[\r\n\0]/;

/**
 * Headers the HTTP client sets from the request itself, or that change how
 * the connection is framed. Neither an integration nor a caller may set them.
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
  "proxy-authorization",
  "proxy-connection",
]);

/** Returns why `name` cannot be a header name we send, or null when it can. */
export function headerNameProblem(name: string): string | null {
  if (!TOKEN.test(name)) {
    return `"${name}" is not a valid header name: use letters, digits and !#$%&'*+-.^_\`|~ only`;
  }
  if (FRAMING_HEADERS.has(name.toLowerCase())) {
    return `"${name}" is set by the HTTP client and cannot be configured`;
  }
  return null;
}

/** Returns why `value` cannot be a header value, or null when it can. */
export function headerValueProblem(value: string): string | null {
  if (LINE_BREAK_OR_NUL.test(value)) {
    return "contains a line break (CR or LF) or NUL, which is not allowed in a header value";
  }
  return null;
}
