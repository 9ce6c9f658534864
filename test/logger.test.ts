import { afterEach, describe, expect, it, vi } from "vitest";
import { createLogger, isoTimestamp, redactSecretFields } from "../src/logger.js";

/** Returns a logger at `info` and the parsed lines it writes. */
function capturedLogger(): { logger: ReturnType<typeof createLogger>; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const logger = createLogger("info", { write: (line: string) => lines.push(JSON.parse(line) as Record<string, unknown>) });
  return { logger, lines };
}

describe("log redaction", () => {
  it("redacts top level and one deep", () => {
    const { logger, lines } = capturedLogger();

    logger.info({ apiKey: "k-1", nested: { token: "t-1", keep: "visible" }, password: "p-1", code: "OK" }, "line");

    expect(lines[0]).toMatchObject({
      apiKey: "[REDACTED]",
      nested: { token: "[REDACTED]", keep: "visible" },
      password: "[REDACTED]",
      code: "OK",
      msg: "line",
    });
    expect(JSON.stringify(lines[0])).not.toMatch(/k-1|t-1|p-1/);
  });

  it("redacts child logger bindings", () => {
    const { logger, lines } = capturedLogger();

    logger.child({ secret_key: "s-1", caller: "ops" }).info("bound");

    expect(lines[0]).toMatchObject({ secret_key: "[REDACTED]", caller: "ops", service: "smsgateway" });
  });

  it("redacts an error, keeping its message", () => {
    const { logger, lines } = capturedLogger();
    const error = Object.assign(new Error("gateway refused"), { authorization: "Bearer b-1" });

    logger.warn({ err: error }, "failed");

    expect(lines[0]?.err).toMatchObject({ type: "Error", message: "gateway refused", authorization: "[REDACTED]" });
    expect(String((lines[0]?.err as { stack?: string }).stack)).toContain("gateway refused");
    expect(error.authorization).toBe("Bearer b-1");
  });

  it("leaves two-deep fields alone", () => {
    const { logger, lines } = capturedLogger();

    logger.info({ outer: { inner: { token: "deep" } } }, "deep");

    expect(lines[0]).toMatchObject({ outer: { inner: { token: "deep" } } });
  });

  it("returns fields without secrets uncopied", () => {
    const fields = { code: "OK", durationMs: 1.5, nested: { keep: 1 } };

    expect(redactSecretFields(fields)).toBe(fields);
  });

  it("leaves the caller's object unchanged", () => {
    const nested = { token: "t-2" };
    const fields = { apiKey: "k-2", nested };

    const redacted = redactSecretFields(fields);

    expect(redacted).toEqual({ apiKey: "[REDACTED]", nested: { token: "[REDACTED]" } });
    expect(fields).toEqual({ apiKey: "k-2", nested: { token: "t-2" } });
    expect(redacted.nested).not.toBe(nested);
  });
});

describe("isoTimestamp", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it.each([
    ["2026-12-05T05:09:53.000Z"],
    ["2026-12-05T05:09:53.007Z"],
    ["2026-12-05T05:09:53.042Z"],
    ["2026-12-05T05:09:53.999Z"],
    ["2026-12-05T05:09:54.001Z"],
    ["2026-12-31T23:59:59.999Z"],
    ["2027-01-01T00:00:00.000Z"],
    ["1969-12-31T23:59:59.500Z"],
  ])("writes %s as toISOString does", (iso) => {
    vi.useFakeTimers({ toFake: ["Date"] });
    vi.setSystemTime(new Date(iso));

    expect(isoTimestamp()).toBe(`,"time":"${iso}"`);
  });

  it("stamps a line with the current time", () => {
    const { logger, lines } = capturedLogger();
    const before = Date.now();

    logger.info("now");

    const time = Date.parse(String(lines[0]?.time));
    expect(time).toBeGreaterThanOrEqual(before);
    expect(time).toBeLessThanOrEqual(Date.now());
  });
});

describe("error serializer", () => {
  it("drops the raw reply of a parser error", async () => {
    const { errors } = await import("undici");
    const { logger, lines } = capturedLogger();
    // The type declarations list two parameters; undici 7 takes the reply bytes as a third.
    const error = Reflect.construct(errors.HTTPParserError, ["Invalid character in Content-Length", undefined, Buffer.from("k-echoed\r\n\r\n{}")]) as Error;

    logger.error({ err: error }, "failed");

    expect(lines[0]?.err).toMatchObject({ type: "HTTPParserError", message: "Invalid character in Content-Length" });
    expect(JSON.stringify(lines[0])).not.toContain("k-echoed");
  });
});

describe("redactSecretFields on buffers", () => {
  it("returns buffer fields uncopied", () => {
    const body = Buffer.alloc(1024 * 1024);
    const fields = { body };

    expect(redactSecretFields(fields)).toBe(fields);
  });
});
