import { describe, expect, test } from "vitest";

import { TimeLimitError, untilAborted, withinTimeLimit } from "../src/until-aborted.js";

describe("withinTimeLimit", () => {
  test("passes on a value that comes in time", async () => {
    await expect(withinTimeLimit(Promise.resolve("done"), 1_000)).resolves.toBe("done");
  });

  test("passes on an error that comes in time", async () => {
    await expect(withinTimeLimit(Promise.reject(new Error("failed")), 1_000)).rejects.toThrow("failed");
  });

  test("rejects a promise that never settles", async () => {
    const never = new Promise<never>(() => undefined);

    await expect(withinTimeLimit(never, 20)).rejects.toBeInstanceOf(TimeLimitError);
  });
});

describe("untilAborted", () => {
  test("rejects with the signal's reason", async () => {
    const controller = new AbortController();
    const never = new Promise<never>(() => undefined);
    const waiting = untilAborted(never, controller.signal);

    controller.abort(new Error("caller left"));

    await expect(waiting).rejects.toThrow("caller left");
  });
});
