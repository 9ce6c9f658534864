import { Code } from "@connectrpc/connect";
import { describe, expect, test } from "vitest";

import { ErrorInfoSchema, GatewayErrorSchema, RetryInfoSchema } from "../../gen/smsgateway/v1/errors_pb.js";
import { GatewayError, InvalidArgumentError, MessageNotStartedError } from "../../src/errors.js";
import { toConnectError } from "../../src/rpc/error-mapping.js";
import { toMessageError } from "../../src/rpc/message-error.js";
import { detailsOf, violatedFields } from "./batch-fixtures.js";

describe("MessageNotStartedError", () => {
  test.each([
    { reason: "canceled" as const, code: Code.Canceled, codeName: "CANCELLED" },
    { reason: "deadline_exceeded" as const, code: Code.DeadlineExceeded, codeName: "DEADLINE_EXCEEDED" },
    { reason: "shutting_down" as const, code: Code.Unavailable, codeName: "UNAVAILABLE" },
  ])("$reason maps to $codeName", ({ reason, code, codeName }) => {
    const error = toMessageError(toConnectError(new MessageNotStartedError(reason, "not sent")));

    expect(error.code).toBe(code);
    expect(error.codeName).toBe(codeName);
    expect(error.message).toBe("not sent");
    expect(detailsOf(error, ErrorInfoSchema)[0]?.reason).toBe("MESSAGE_NOT_STARTED");
  });
});

describe("toMessageError", () => {
  test("keeps the BadRequest detail", () => {
    const error = toMessageError(toConnectError(InvalidArgumentError.field("messages[2].to", "required")));

    expect(error.codeName).toBe("INVALID_ARGUMENT");
    expect(error.message).toBe("messages[2].to: required");
    expect(violatedFields(error)).toEqual(["messages[2].to"]);
  });

  test("carries the gateway's Retry-After as RetryInfo", () => {
    const gatewayError = new GatewayError("gateway answered 429", {
      failure: "rate_limited",
      stage: "send",
      httpStatus: 429,
      bodyExcerpt: "slow down",
      bodyTruncated: false,
      attempts: 1,
      retryAfterSeconds: 30,
    });
    const connectError = toConnectError(gatewayError);

    const error = toMessageError(connectError);

    expect(connectError.metadata.get("retry-after")).toBe("30");
    expect(error.code).toBe(Code.ResourceExhausted);
    expect(detailsOf(error, GatewayErrorSchema)[0]).toMatchObject({ httpStatus: 429, bodyExcerpt: "slow down" });
    expect(detailsOf(error, RetryInfoSchema)[0]?.retryDelay?.seconds).toBe(30n);
  });

  test("hides the cause of an internal error", () => {
    const error = toMessageError(toConnectError(new Error("database password is hunter2")));

    expect(error.codeName).toBe("INTERNAL");
    expect(error.message).not.toContain("hunter2");
    expect(error.details).toEqual([]);
  });
});
