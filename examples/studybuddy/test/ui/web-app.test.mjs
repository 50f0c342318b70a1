// Browser tests of the deployed web app (Debian's chromium through playwright-core).
//
// UI_BASE_URL is the page to test (the environment's static site). With UI_API=mock (the
// default) the browser's API calls are answered by this repository's real request handler
// over an in-memory store, so the test checks the deployed build and the UI without depending
// on an API deployment; with UI_API=live they go to the API the page is configured for.
// Screenshots land in reports/ui/.

import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { chromium } from "playwright-core";
import { createServer } from "../../src/app.mjs";
import { createMemoryStore } from "../../src/store/memory.mjs";

const baseUrl = process.env.UI_BASE_URL;
const apiMode = process.env.UI_API ?? "mock";
const shots = path.resolve(import.meta.dirname, "../../reports/ui");
const executablePath = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

let browser;
let profile;
let mockServer;
let mockUrl;

before(async () => {
  assert.ok(baseUrl, "UI_BASE_URL must name the page to test (npm run test:ui -- --base-url URL)");
  assert.ok(["mock", "live"].includes(apiMode), "UI_API must be mock or live");
  mkdirSync(shots, { recursive: true });
  if (apiMode === "mock") {
    mockServer = createServer({ store: createMemoryStore(), version: "ui-test" });
    await new Promise((resolve) => mockServer.listen(0, "127.0.0.1", resolve));
    mockUrl = `http://127.0.0.1:${mockServer.address().port}`;
  }
  profile = await mkdtemp(path.join(tmpdir(), "studybuddy-chromium-"));
  browser = await chromium.launch({
    executablePath,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
    ],
  });
});

after(async () => {
  await browser?.close();
  mockServer?.close();
  if (profile) await rm(profile, { recursive: true, force: true });
});

/** A page in a fresh context, with page errors and failed static requests collected. */
async function openApp({ locale = "en-US" } = {}) {
  const context = await browser.newContext({
    locale,
    timezoneId: "Europe/Berlin",
    viewport: { width: 1000, height: 900 },
  });
  const page = await context.newPage();
  const problems = [];
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  page.on("response", (response) => {
    const { pathname } = new URL(response.url());
    // config.json is written by a deployment; a page served without one falls back to its meta tag.
    const optional = response.status() === 404 && pathname.endsWith("/config.json");
    if (response.status() >= 400 && !pathname.startsWith("/api/") && !optional) {
      problems.push(`${response.status()} ${response.url()}`);
    }
  });
  page.on("requestfailed", (request) => problems.push(`failed: ${request.url()}`));
  if (mockUrl) {
    await page.route(
      (url) => url.pathname.startsWith("/api/") || url.pathname === "/healthz",
      async (route) => {
        const url = new URL(route.request().url());
        const response = await route.fetch({ url: `${mockUrl}${url.pathname}${url.search}` });
        await route.fulfill({ response });
      },
    );
  }
  page.on("dialog", (dialog) => dialog.accept());
  await page.goto(baseUrl);
  await page.waitForSelector("body[data-ready=true]");
  return { context, page, problems };
}

describe("the StudyBuddy web app", () => {
  test("loads its hashed assets and translations without errors", async () => {
    const { context, page, problems } = await openApp();
    assert.equal(await page.title(), "StudyBuddy");
    assert.equal(await page.textContent("#plan-title"), "Plan a study session");
    const scripts = await page.$$eval("script[src], link[rel=stylesheet]", (els) =>
      els.map((el) => el.getAttribute("src") ?? el.getAttribute("href")),
    );
    for (const ref of scripts) assert.match(ref, /\.[0-9a-f]{8}\.(js|css)$/, `${ref} is not content-hashed`);
    assert.match(await page.getAttribute("#streak-icon", "src"), /streak(\.[0-9a-f]{8})?\.svg$/);
    await page.screenshot({ path: path.join(shots, "home.png"), fullPage: true });
    assert.deepEqual(problems, []);
    await context.close();
  });

  test("speaks German to a German browser", async () => {
    const { context, page, problems } = await openApp({ locale: "de-DE" });
    assert.equal(await page.getAttribute("html", "lang"), "de");
    assert.equal(await page.textContent("#plan-title"), "Lerneinheit planen");
    assert.deepEqual(problems, []);
    await context.close();
  });

  test("plans a session, marks it done, counts the streak and deletes it", async () => {
    const { context, page, problems } = await openApp();
    const subject = `UI test ${Date.now()}`;

    await page.click("#plan-form button[type=submit]");
    await page.waitForSelector("#form-errors:has-text('Subject')");

    await page.fill("input[name=subject]", subject);
    await page.fill("input[name=topic]", "Cell division");
    await page.click("#plan-form button[type=submit]");
    const planned = page.locator("#planned li", { hasText: subject });
    await planned.waitFor();
    assert.match(await planned.textContent(), /Cell division/);

    await planned.locator("[data-action=toggle]").click();
    const done = page.locator("#done li", { hasText: subject });
    await done.waitFor();
    await page.waitForSelector("#streak[data-state=alive]");
    assert.match(await page.textContent("#streak-text"), /\d+-day streak/);
    await page.screenshot({ path: path.join(shots, "after-done.png"), fullPage: true });

    await done.locator("[data-action=delete]").click();
    await done.waitFor({ state: "detached" });
    assert.deepEqual(problems, []);
    await context.close();
  });
});
