import { InvalidArgumentError } from "../errors.js";

const PREFIX = "after:";

/** Encodes the id of the last item of a page as an opaque token. */
export function encodePageToken(lastId: string): string {
  return Buffer.from(PREFIX + lastId, "utf8").toString("base64url");
}

/** Decodes a page token back to the id to list after; empty means the first page. */
export function decodePageToken(token: string, field: string): string | undefined {
  if (token === "") {
    return undefined;
  }

  const decoded = Buffer.from(token, "base64url").toString("utf8");
  if (!decoded.startsWith(PREFIX) || decoded.length === PREFIX.length) {
    throw InvalidArgumentError.field(field, "is not a token this service issued; pass next_page_token from the previous response, or nothing for the first page");
  }
  return decoded.slice(PREFIX.length);
}
