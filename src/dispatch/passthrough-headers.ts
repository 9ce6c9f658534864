import { isFramingHeader, isHeaderValue, isHttpToken } from "../domain/http-header.js";
import { InvalidArgumentError } from "../errors.js";

/**
 * Copies the passthrough headers of a send into `headers`, after checking
 * each one.
 *
 * A passthrough header cannot replace a credential header (the names in
 * `credentialNames`, lower case) or a framing header, because the caller of
 * one send must not override the integration or the HTTP framing. Names are
 * compared without regard to case.
 *
 * @throws InvalidArgumentError naming `passthrough.headers["<name>"]` for a
 *   name that is not an HTTP token, a protected header, or a value with
 *   control characters such as CR, LF or NUL.
 */
export function addPassthroughHeaders(
  headers: Record<string, string>,
  passthrough: Record<string, string>,
  credentialNames: ReadonlySet<string>,
): void {
  for (const name of Object.keys(passthrough)) {
    const value = passthrough[name]!;
    const field = `passthrough.headers[${JSON.stringify(name)}]`;
    if (!isHttpToken(name)) {
      throw InvalidArgumentError.field(
        field,
        "The header name must be non-empty and use only letters, digits and !#$%&'*+-.^_`|~.",
      );
    }

    const lowerName = name.toLowerCase();
    if (isFramingHeader(name)) {
      throw InvalidArgumentError.field(
        field,
        `The header ${name} is set by the HTTP client and cannot be passed through. Remove it.`,
      );
    }
    if (credentialNames.has(lowerName)) {
      throw InvalidArgumentError.field(
        field,
        `The header ${name} carries the integration's credentials and cannot be replaced per send. ` +
          "Remove it, or change the integration.",
      );
    }
    if (!isHeaderValue(value)) {
      throw InvalidArgumentError.field(
        field,
        "The header value must not contain CR, LF, NUL or other control characters, or characters above U+00FF.",
      );
    }

    headers[name] = value;
  }
}
