/**
 * Drives the web console in headless Chromium (Debian's `chromium` package,
 * never a downloaded browser) against the real service and the stand-in
 * gateway, both on loopback. The tests run in order as one operator's
 * session: each continues from the page state the previous one left.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { chromium, type BrowserContext, type Page, type Request } from "playwright-core";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { IntegrationService } from "../../gen/smsgateway/v1/integration_service_pb.js";
import { startLocalGateway } from "../../src/tools/local-gateway.js";
import { ScriptedGateway } from "../helpers/scripted-gateway.js";
import { startTestService, type TestService } from "../helpers/service.js";
import { createApiKey } from "../security/security-fixtures.js";

/** Debian's chromium; CHROMIUM_PATH points the test at another system build. */
const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
const ARTIFACTS_DIR = path.resolve("test-artifacts");
const IN_CI = process.env.CI === "true";
const chromiumInstalled = existsSync(CHROMIUM_PATH);
const MISSING = `${CHROMIUM_PATH} is not installed; install Debian's chromium package`;

if (!chromiumInstalled && !IN_CI) {
  console.warn(`web console browser test skipped: ${MISSING}`);
}

let service: TestService;
/** A second service that requires API keys, for the console with a key of limited scopes. */
let keyedService: TestService;
/** API keys of `keyedService`: `sendOnly` has the scope sms:send alone, as the README's `ci` example. */
let keys: { sendOnly: string; operator: string };
let gateway: Awaited<ReturnType<typeof startLocalGateway>>;
let refusingGateway: ScriptedGateway;
let userDataDir: string;
let context: BrowserContext;
let page: Page;
const gatewayLines: string[] = [];
const apiRequests: Request[] = [];
const pageErrors: string[] = [];
const blockedUrls: string[] = [];

/** Returns the JSON body of the latest call to an RPC method, as the page sent it. */
function lastCallBody(method: string): unknown {
  const call = apiRequests.findLast((request) => request.url().endsWith(`/${method}`));
  return JSON.parse(call?.postData() ?? "null");
}

/** Runs only where Chromium is installed; in CI a missing Chromium fails the run instead. */
describe.skipIf(!chromiumInstalled && !IN_CI)(`web console in Chromium${chromiumInstalled ? "" : `, ${CHROMIUM_PATH} missing`}`, () => {
  beforeAll(async () => {
    if (!chromiumInstalled) {
      throw new Error(`${MISSING}: .ci/run does that when it is missing`);
    }
    service = await startTestService();
    const sendOnly = createApiKey("ci", "sms:send");
    const operator = createApiKey("ops", "integrations:read+integrations:write");
    keyedService = await startTestService({ apiKeys: `${sendOnly.entry},${operator.entry}` });
    keys = { sendOnly: sendOnly.key, operator: operator.key };
    gateway = await startLocalGateway({ host: "127.0.0.1", port: 0 }, (line) => gatewayLines.push(line));
    refusingGateway = (await ScriptedGateway.start()).otherwise({ status: 401, json: { error: "invalid api key" } });

    userDataDir = mkdtempSync(path.join(tmpdir(), "smsgateway-chromium-"));
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM_PATH,
      args: CHROMIUM_ARGS,
      headless: true,
      viewport: { width: 1280, height: 900 },
    });
    // The page may load only from the services: anything else is blocked and reported.
    const origins = new Set([service.baseUrl, keyedService.baseUrl].map((url) => new URL(url).origin));
    await context.route("**/*", (route) => {
      if (origins.has(new URL(route.request().url()).origin)) {
        return route.continue();
      }
      blockedUrls.push(route.request().url());
      return route.abort();
    });

    page = context.pages()[0] ?? (await context.newPage());
    page.setDefaultTimeout(15_000);
    page.on("pageerror", (error) => pageErrors.push(error.message));
    page.on("console", (message) => {
      // Chromium logs every non-2xx fetch; RPC errors are expected in these tests.
      if (message.type() === "error" && !message.text().startsWith("Failed to load resource")) {
        pageErrors.push(message.text());
      }
    });
    page.on("request", (request) => {
      if (request.url().includes("/smsgateway.v1.")) {
        apiRequests.push(request);
      }
    });
    mkdirSync(ARTIFACTS_DIR, { recursive: true });
  }, 60_000);

  afterAll(async () => {
    await context?.close();
    if (userDataDir !== undefined) {
      rmSync(userDataDir, { recursive: true, force: true });
    }
    gateway?.server.close();
    await refusingGateway?.close();
    await service?.stop();
    await keyedService?.stop();
  });

  test("page opens with an empty list", async () => {
    await page.goto(`${service.baseUrl}/`);

    await page.getByText("No integrations yet.").waitFor();
    expect(await page.title()).toBe("smsgateway console");
    expect(await page.getByRole("heading", { name: "Send an SMS" }).isVisible()).toBe(true);
  });

  test("missing required fields are named", async () => {
    await page.getByRole("button", { name: "New integration" }).click();
    await page.getByLabel("Display name").fill("Incomplete");
    await page.getByRole("button", { name: "Save" }).click();

    const outcome = page.locator("#editor-outcome");
    await outcome.getByText("INVALID_ARGUMENT").waitFor();
    const text = await outcome.innerText();
    expect(text).toContain("integration.base_url");
    expect(text).toContain("integration.default_sender");
    expect(await page.getByLabel("Base URL").getAttribute("aria-invalid")).toBe("true");
  });

  test("created integration appears in the list", async () => {
    await page.getByLabel("Id", { exact: true }).fill("demo");
    await page.getByLabel("Display name").fill("Demo gateway");
    await page.getByLabel("Base URL").fill(`${gateway.url}/sms`);
    await page.getByLabel("Default sender").fill("Acme");
    await page.getByLabel("API key header").fill("X-API-KEY");
    await page.getByLabel("API key", { exact: true }).fill("demo-key-0123456789");
    await page.getByRole("button", { name: "Save" }).click();

    await page.getByText("Created demo.").waitFor();
    const row = page.getByRole("row", { name: /demo/ });
    expect(await row.innerText()).toContain("Demo gateway");
    expect(await row.innerText()).toContain("****6789");
    expect(await page.locator("#editor").isHidden()).toBe(true);
  });

  test("test before saving stores nothing", async () => {
    await page.getByRole("button", { name: "New integration" }).click();
    const editorTest = page.locator("#editor-test");
    await page.getByLabel("Id", { exact: true }).fill("draft");
    await page.getByLabel("Default sender").fill("Draft");
    await page.getByLabel("API key header").fill("X-API-KEY");
    await page.getByLabel("API key", { exact: true }).fill("draft-key-98764321");
    await editorTest.getByRole("button", { name: "Run test" }).click();
    await editorTest.getByText("INVALID_ARGUMENT").waitFor();
    expect(await editorTest.innerText()).toContain("integration.base_url");
    expect(await page.getByLabel("Base URL").getAttribute("aria-invalid")).toBe("true");

    await page.getByLabel("Base URL").fill(`${gateway.url}/sms`);
    await editorTest.getByRole("button", { name: "Run test" }).click();
    await editorTest.getByText("Prepared requests").waitFor();
    const text = await editorTest.innerText();
    expect(text).toContain(`POST ${gateway.url}/sms`);
    expect(text).toContain("X-API-KEY: ****4321");
    expect(text).toContain("integration.base_url allowed: 127.0.0.1");
    expect(text).not.toContain("draft-key-98764321");
    expect(await page.getByLabel("Base URL").getAttribute("aria-invalid")).toBeNull();
    expect(lastCallBody("TestIntegration")).toMatchObject({ integration: { id: "draft", baseUrl: `${gateway.url}/sms` } });

    await page.getByRole("button", { name: "Cancel" }).click();
    await page.getByRole("button", { name: "Refresh" }).click();
    await page.getByRole("button", { name: "Edit demo" }).waitFor();
    expect(await page.getByRole("button", { name: "Edit draft" }).count()).toBe(0);
  });

  test("edit sends only changed fields", async () => {
    await page.getByRole("button", { name: "Edit demo" }).click();
    const apiKey = page.getByLabel("API key", { exact: true });
    expect(await apiKey.inputValue()).toBe("");
    expect(await page.locator("#f-api_key-hint").innerText()).toContain("****6789");
    await page.getByLabel("Default sender").fill("AcmeBank");
    await page.getByRole("button", { name: "Save" }).click();

    await page.getByText("Saved demo.").waitFor();
    const update = service.logLines.find((line) => line.msg === "integration updated");
    expect(update?.fields).toEqual(["default_sender"]);
    expect(lastCallBody("ConfigureIntegration")).toEqual({
      integration: { id: "demo", defaultSender: "AcmeBank" },
      updateMask: "defaultSender",
    });
    await page.getByRole("row", { name: /demo/ }).getByText("AcmeBank").waitFor();
  });

  test("secret key is set and removed", async () => {
    await page.getByRole("button", { name: "Edit demo" }).click();
    await page.getByLabel("Secret key header").fill("X-SECRET-KEY");
    await page.getByLabel("Secret key", { exact: true }).fill("demo-secret-4321");
    await page.getByRole("button", { name: "Save" }).click();
    await page.getByText("Saved demo.").waitFor();
    expect(lastCallBody("ConfigureIntegration")).toEqual({
      integration: { id: "demo", secretKeyHeader: "X-SECRET-KEY", secretKey: "demo-secret-4321" },
      updateMask: "secretKeyHeader,secretKey",
    });

    await page.getByRole("button", { name: "Edit demo" }).click();
    expect(await page.locator("#f-secret_key-hint").innerText()).toContain("****4321");
    await page.getByLabel("Remove the stored secret key").check();
    await page.getByRole("button", { name: "Save" }).click();
    await page.getByText("Saved demo.").waitFor();
    expect(lastCallBody("ConfigureIntegration")).toEqual({
      integration: { id: "demo" },
      updateMask: "secretKey",
    });

    await page.getByRole("button", { name: "Edit demo" }).click();
    expect(await page.getByLabel("Secret key header").inputValue()).toBe("");
    expect(await page.locator("#f-secret_key-hint").innerText()).toBe("Write-only. None stored.");
    expect(await page.getByLabel("Remove the stored secret key").isHidden()).toBe(true);
    await page.getByRole("button", { name: "Cancel" }).click();
  });

  test("token authentication is configured", async () => {
    await page.getByRole("button", { name: "Edit demo" }).click();
    await page.getByLabel("Authenticate by token").check();
    await page.getByRole("button", { name: "Save" }).click();

    const outcome = page.locator("#editor-outcome");
    await outcome.getByText("INVALID_ARGUMENT").waitFor();
    expect(await outcome.innerText()).toContain("integration.auth_url");
    await page.getByLabel("Auth URL").fill(`${gateway.url}/auth`);
    await page.getByLabel("Token key").fill("token");
    await page.getByRole("button", { name: "Save" }).click();
    await page.getByText("Saved demo.").waitFor();
    expect(lastCallBody("ConfigureIntegration")).toEqual({
      integration: { id: "demo", authenticateByToken: true, authUrl: `${gateway.url}/auth`, tokenKey: "token" },
      updateMask: "authenticateByToken,authUrl,tokenKey",
    });
  });

  test("sent SMS shows the gateway's id", async () => {
    expect(await page.getByLabel("Integration", { exact: true }).inputValue()).toBe("demo");
    const suggestions = page.locator("#s-integration_options option");
    expect(await suggestions.count()).toBe(1);
    expect(await suggestions.first().getAttribute("value")).toBe("demo");
    await page.getByLabel("To", { exact: true }).fill("+15551234567");
    await page.getByLabel("Content").fill("Your code is 123456");
    await page.getByRole("button", { name: "Send", exact: true }).click();

    const outcome = page.locator("#send-outcome");
    await outcome.getByText("Message id").waitFor();
    const gatewayId = /-> id (msg_\S+)$/.exec(gatewayLines.at(-1) ?? "")?.[1];
    expect(gatewayId).toMatch(/^msg_1_/);
    expect(await outcome.innerText()).toContain(gatewayId);
    expect(gatewayLines.at(-1)).toContain("from AcmeBank");
    expect(gatewayLines.at(-1)).toMatch(/headers: .*\btoken\b/);
    await page.screenshot({ path: path.join(ARTIFACTS_DIR, "console.png"), fullPage: true });
  });

  test("row test shows the prepared requests", async () => {
    const linesBefore = gatewayLines.length;
    await page.getByRole("button", { name: "Test demo" }).click();
    const tester = page.locator("#tester");
    await tester.getByRole("heading", { name: "Test demo" }).waitFor();
    await tester.getByRole("button", { name: "Run test" }).click();

    await tester.getByText("Prepared requests").waitFor();
    const text = await tester.innerText();
    expect(text).toContain(`POST ${gateway.url}/auth`);
    expect(text).toContain(`POST ${gateway.url}/sms`);
    expect(text).toContain("X-API-KEY: ****6789");
    expect(text).toContain("token: <token from data.token of the auth_url reply>");
    expect(text).toContain("integration.auth_url allowed: 127.0.0.1");
    expect(text).toContain("integration.base_url allowed: 127.0.0.1");
    expect(text).toContain("Placeholders stand in for to and content");
    expect(text).not.toContain("demo-key-0123456789");
    expect(lastCallBody("TestIntegration")).toEqual({ integrationId: "demo" });
    expect(gatewayLines.length).toBe(linesBefore);
  });

  test("test SMS shows the gateway's id", async () => {
    const tester = page.locator("#tester");
    await tester.getByLabel("Recipient").fill("+15557654321");
    await tester.getByLabel("Message text").fill("Test from the console");
    await tester.getByLabel("Send a test SMS through the gateway").check();
    await tester.getByRole("button", { name: "Run test" }).click();

    await tester.getByText("Message id").waitFor();
    const gatewayId = /-> id (msg_\S+)$/.exec(gatewayLines.at(-1) ?? "")?.[1];
    expect(gatewayId).toMatch(/^msg_\d+_/);
    const text = await tester.innerText();
    expect(text).toContain(gatewayId);
    expect(text).toContain(`POST ${gateway.url}/sms`);
    expect(text).toContain("Reply body:");
    expect(gatewayLines.at(-1)).toContain('to +15557654321 from AcmeBank: "Test from the console"');
    await page.screenshot({ path: path.join(ARTIFACTS_DIR, "console-test.png"), fullPage: true });
    await tester.getByRole("button", { name: "Close" }).click();
  });

  test("send errors name the field", async () => {
    await page.getByLabel("To", { exact: true }).fill("");
    await page.getByRole("button", { name: "Send", exact: true }).click();

    const outcome = page.locator("#send-outcome");
    await outcome.getByText("INVALID_ARGUMENT").waitFor();
    expect(await outcome.innerText()).toContain("to: required");
    expect(await page.getByLabel("To", { exact: true }).getAttribute("aria-invalid")).toBe("true");
  });

  test("invalid passthrough is caught before sending", async () => {
    const sendsBefore = apiRequests.length;
    await page.getByLabel("To", { exact: true }).fill("+15551234567");
    await page.getByLabel("Passthrough (JSON)").fill('{"body": {"priority": "high"');
    await page.getByRole("button", { name: "Send", exact: true }).click();

    const outcome = page.locator("#send-outcome");
    await outcome.getByText("NOT SENT").waitFor();
    expect(await outcome.innerText()).toContain("passthrough: is not valid JSON");
    expect(apiRequests.length).toBe(sendsBefore);
  });

  test("gateway refusal shows its status and reply", async () => {
    await page.getByLabel("Passthrough (JSON)").fill('{"body": {"priority": "high"}}');
    await page.getByRole("button", { name: "New integration" }).click();
    await page.getByLabel("Id", { exact: true }).fill("refusing");
    await page.getByLabel("Base URL").fill(refusingGateway.url());
    await page.getByLabel("Default sender").fill("Acme");
    await page.getByLabel("API key header").fill("X-API-KEY");
    await page.getByLabel("API key", { exact: true }).fill("wrong-key-0000");
    await page.getByRole("button", { name: "Save" }).click();
    await page.getByText("Created refusing.").waitFor();
    await page.getByRole("button", { name: "Send refusing" }).click();
    await page.getByRole("button", { name: "Send", exact: true }).click();

    const outcome = page.locator("#send-outcome");
    await outcome.getByText("FAILED_PRECONDITION").waitFor();
    const text = await outcome.innerText();
    expect(text).toMatch(/HTTP status\s+401/);
    expect(text).toContain("invalid api key");
    expect(JSON.parse(refusingGateway.requests[0]?.body ?? "{}")).toMatchObject({ priority: "high" });
  });

  test("service API key is sent as a bearer token", async () => {
    const isListCall = (request: Request) => request.url().endsWith("/ListIntegrations");
    await page.getByLabel("Service API key").fill("console-key-0001");
    const withKey = page.waitForRequest(isListCall);
    await page.getByRole("button", { name: "Use key" }).click();
    const withKeyHeaders = await (await withKey).allHeaders();
    const withoutKey = page.waitForRequest(isListCall);
    await page.getByRole("button", { name: "Forget" }).click();
    const withoutKeyHeaders = await (await withoutKey).allHeaders();

    expect(withKeyHeaders.authorization).toBe("Bearer console-key-0001");
    expect(withoutKeyHeaders.authorization).toBeUndefined();
    expect(await page.getByLabel("Service API key").inputValue()).toBe("");
    expect(await page.evaluate("sessionStorage.length")).toBe(0);
  });

  test("layout fits a phone screen", async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    await page.goto(`${service.baseUrl}/`);
    await page.getByRole("button", { name: "Edit demo" }).click();
    await page.getByLabel("Display name").waitFor();

    const scrollWidth = await page.evaluate("document.documentElement.scrollWidth");
    expect(scrollWidth).toBeLessThanOrEqual(390);
    await page.screenshot({ path: path.join(ARTIFACTS_DIR, "console-phone.png"), fullPage: true });
    await page.getByRole("button", { name: "Cancel" }).click();
    await page.setViewportSize({ width: 1280, height: 900 });
  });

  test("deleted integration leaves the list", async () => {
    await page.getByLabel("Integration", { exact: true }).fill("demo");
    page.once("dialog", (dialog) => void dialog.accept());
    await page.getByRole("button", { name: "Delete demo" }).click();

    await page.getByText("Deleted demo.").waitFor();
    expect(await page.getByRole("button", { name: "Edit demo" }).count()).toBe(0);
    expect(await page.getByRole("button", { name: "Edit refusing" }).count()).toBe(1);
    await expect.poll(() => page.getByLabel("Integration", { exact: true }).inputValue()).not.toBe("demo");
    expect(await page.getByLabel("Integration", { exact: true }).inputValue()).not.toBe("");
  });

  test("send-only API key types the integration", async () => {
    const transport = createConnectTransport({ baseUrl: keyedService.baseUrl, httpVersion: "1.1" });
    await createClient(IntegrationService, transport).configureIntegration(
      { integration: { id: "keyed", baseUrl: `${gateway.url}/sms`, apiKeyHeader: "X-API-KEY", apiKey: "keyed-key-0123456789", defaultSender: "Acme" }, allowMissing: true },
      { headers: { authorization: `Bearer ${keys.operator}` } },
    );
    await page.goto(`${keyedService.baseUrl}/`);
    await page.getByLabel("Service API key").fill(keys.sendOnly);
    await page.getByRole("button", { name: "Use key" }).click();

    const hint = page.locator("#s-integration_id-hint");
    await hint.getByText("PERMISSION_DENIED").waitFor();
    expect(await hint.innerText()).toBe("This API key may not list integrations (PERMISSION_DENIED), so type the id of the integration to send through.");
    expect(await page.locator("#list-error").innerText()).toContain("lacks the scope integrations:read");
    expect(await page.locator("#integration-rows").innerText()).toContain("Integrations could not be listed");
    expect(await page.locator("#s-integration_options option").count()).toBe(0);

    await page.getByLabel("Integration", { exact: true }).fill("keyed");
    await page.getByLabel("To", { exact: true }).fill("+15551234567");
    await page.getByLabel("Content").fill("Sent with a send-only key");
    await page.getByLabel("Passthrough (JSON)").fill("");
    await page.getByRole("button", { name: "Send", exact: true }).click();

    await page.locator("#send-outcome").getByText("Message id").waitFor();
    await page.screenshot({ path: path.join(ARTIFACTS_DIR, "console-send-only.png"), fullPage: true });
    expect(gatewayLines.at(-1)).toContain('to +15551234567 from Acme: "Sent with a send-only key"');
    expect(lastCallBody("SendSms")).toMatchObject({ integrationId: "keyed" });
    await page.getByRole("button", { name: "Forget" }).click();
  });

  test("key change clears the list status", async () => {
    await page.getByLabel("Service API key").fill(keys.operator);
    await page.getByRole("button", { name: "Use key" }).click();
    await page.getByRole("button", { name: "Edit keyed" }).waitFor();
    await page.getByRole("button", { name: "New integration" }).click();
    await page.getByLabel("Id", { exact: true }).fill("p1");
    await page.getByLabel("Base URL").fill(`${gateway.url}/sms`);
    await page.getByLabel("Default sender").fill("Acme");
    await page.getByLabel("API key header").fill("X-API-KEY");
    await page.getByLabel("API key", { exact: true }).fill("p1-key-0123456789");
    await page.getByRole("button", { name: "Save" }).click();
    await page.getByText("Created p1.").waitFor();

    await page.getByLabel("Service API key").fill(keys.sendOnly);
    await page.getByRole("button", { name: "Use key" }).click();

    await page.locator("#list-error").getByText("PERMISSION_DENIED").waitFor();
    expect(await page.locator("#list-status").innerText()).toBe("");
  });

  test("row action clears the list status", async () => {
    await page.getByLabel("Service API key").fill(keys.operator);
    await page.getByRole("button", { name: "Use key" }).click();
    await page.getByRole("button", { name: "Edit p1" }).click();
    await page.getByLabel("Display name").fill("Renamed");
    await page.getByRole("button", { name: "Save" }).click();
    await page.getByText("Saved p1.").waitFor();

    await page.getByRole("button", { name: "Send p1" }).click();

    expect(await page.locator("#list-status").innerText()).toBe("");
    expect(await page.getByLabel("Integration", { exact: true }).inputValue()).toBe("p1");
    await page.getByRole("button", { name: "Forget" }).click();
  });

  test("overtaken list reply is dropped", async () => {
    await page.getByLabel("Service API key").fill(keys.operator);
    await page.getByRole("button", { name: "Use key" }).click();
    await page.getByRole("button", { name: "Edit p1" }).click();
    await page.getByLabel("Display name").fill("Renamed again");
    // Holds the list request that follows the save until the key has changed and its own list request failed.
    let release = () => {};
    const released = new Promise<void>((resolve) => (release = resolve));
    let requested = () => {};
    const holding = new Promise<void>((resolve) => (requested = resolve));
    let first = true;
    const listPath = "**/smsgateway.v1.IntegrationService/ListIntegrations";
    await page.route(listPath, async (route) => {
      if (first) {
        first = false;
        requested();
        await released;
      }
      await route.continue();
    });

    try {
      await page.getByRole("button", { name: "Save" }).click();
      await holding;
      await page.getByLabel("Service API key").fill(keys.sendOnly);
      await page.getByRole("button", { name: "Use key" }).click();
      await page.locator("#list-error").getByText("PERMISSION_DENIED").waitFor();
      const heldReply = page.waitForResponse((response) => response.url().includes("/ListIntegrations") && response.status() === 200);
      release();
      await heldReply;
      // Lets the page run what the reply resolves.
      await page.evaluate(() => new Promise((resolve) => setTimeout(resolve, 100)));

      expect(await page.locator("#list-status").innerText()).toBe("");
      expect(await page.locator("#list-error").innerText()).toContain("PERMISSION_DENIED");
      expect(await page.getByRole("button", { name: "Edit p1" }).count()).toBe(0);
    } finally {
      release();
      await page.unroute(listPath);
    }
  });

  test("page made no errors or outside requests", () => {
    expect(pageErrors).toEqual([]);
    expect(blockedUrls).toEqual([]);
  });
});
