import { describe, expect, test } from "vitest";
import { startServiceProcess } from "../helpers/service-process.js";

describe("shutdown with stdout closed", () => {
  // A process that retries its failed log write forever never exits, so the test timeout fails it.
  test("exits after its reader is gone", async () => {
    const service = await startServiceProcess();
    try {
      service.child.stdout!.destroy();
      await new Promise((resolve) => setTimeout(resolve, 200));

      service.child.kill("SIGINT");

      expect(await service.exited).toEqual({ code: 0, signal: null });
    } finally {
      await service.stop();
    }
  }, 20_000);
});
