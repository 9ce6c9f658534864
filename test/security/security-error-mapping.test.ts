import { Code } from "@connectrpc/connect";
import { describe, expect, test } from "vitest";

import { PermissionDeniedError, SecretUnreadableError, UnauthenticatedError } from "../../src/errors.js";
import { toConnectError } from "../../src/rpc/error-mapping.js";

describe("security errors map to RPC codes", () => {
  test("UnauthenticatedError is UNAUTHENTICATED with a Bearer challenge", () => {
    const error = toConnectError(new UnauthenticatedError("missing API key"));

    expect(error.code).toBe(Code.Unauthenticated);
    expect(error.rawMessage).toBe("missing API key");
    expect(error.metadata.get("www-authenticate")).toBe("Bearer");
  });

  test("PermissionDeniedError is PERMISSION_DENIED", () => {
    const error = toConnectError(new PermissionDeniedError("lacks sms:send", "ci"));

    expect(error.code).toBe(Code.PermissionDenied);
    expect(error.rawMessage).toBe("lacks sms:send");
  });

  test("SecretUnreadableError is FAILED_PRECONDITION", () => {
    const error = toConnectError(new SecretUnreadableError("cannot be decrypted (key id k1)", "acme", "api_key", "k1"));

    expect(error.code).toBe(Code.FailedPrecondition);
    expect(error.rawMessage).toBe("cannot be decrypted (key id k1)");
  });
});
