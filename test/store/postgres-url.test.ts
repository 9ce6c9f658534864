import { describe, expect, test } from "vitest";

import { describePostgresUrl, isPostgresUrl } from "../../src/store/postgres-database.js";

describe("isPostgresUrl", () => {
  test.each([
    ["postgres://host/db", true],
    ["postgresql://host/db", true],
    ["POSTGRES://host/db", true],
    ["postgres:host", false],
    ["mysql://host/db", false],
    ["sqlite:data/smsgateway.db", false],
  ])("%s → %s", (url, expected) => {
    expect(isPostgresUrl(url)).toBe(expected);
  });
});

describe("describePostgresUrl", () => {
  test.each([
    ["postgres://app:secret@db.internal:5432/smsgateway", "postgres://app@db.internal:5432/smsgateway"],
    ["postgresql://app@db.internal/smsgateway", "postgresql://app@db.internal/smsgateway"],
    ["postgres://app:secret@db.internal/sms?sslmode=require&sslpassword=secret", "postgres://app@db.internal/sms"],
    ["postgres://:secret@db.internal/sms#secret", "postgres://db.internal/sms"],
    ["postgresql:///sms?host=/var/run/postgresql&user=app&password=secret", "postgresql:///sms?host=/var/run/postgresql"],
  ])("%s → %s", (url, expected) => {
    expect(describePostgresUrl(url)).toBe(expected);
  });

  test("appends a schema other than public", () => {
    expect(describePostgresUrl("postgres://db.internal/sms", "tenant_a")).toBe("postgres://db.internal/sms (schema tenant_a)");
  });

  test("rejects an unparsable URL without echoing it", () => {
    expect(() => describePostgresUrl("postgres://app:se cret@[bad/db")).toThrow("invalid PostgreSQL database URL");
    expect(() => describePostgresUrl("postgres://app:se cret@[bad/db")).not.toThrow("se cret");
  });
});
