// The overview: signing in, the pipeline at a glance, live updates, desktop and phone widths.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startPortal, launchBrowser, signIn, hydrated, shot, assertFitsPhone, PHONE, DESKTOP, sample } from '../lib/harness.mjs';
import { readFileSync, mkdtempSync, mkdirSync, copyFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

let portal;
let browser;
// The definition is loaded from a long path, as on a real machine, so the page must wrap it.
const longHome = mkdtempSync(join(tmpdir(), 'flightdeck-e2e-definition-'));
const longDir = join(longHome, 'home', 'someone-with-a-long-name', 'src', 'studybuddy-mobile-and-web', 'deploy');
const longDefinition = join(longDir, 'flightdeck.yml');

before(async () => {
  mkdirSync(longDir, { recursive: true });
  copyFileSync(sample, longDefinition);
  portal = await startPortal({ dana: 'developer', vera: 'viewer', rhea: 'release-manager' }, longDefinition);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await portal?.stop();
  rmSync(longHome, { recursive: true, force: true });
});

test('a person signs in and sees all four phases, schedules and environments', async () => {
  const page = await browser.context.newPage();
  await page.goto(portal.url);
  assert.match(page.url(), /\/login\?next=/, 'anonymous visitors are sent to sign in');
  await signIn(page, portal, 'dana');
  await hydrated(page);
  for (const phase of ['Development', 'CI/CD', 'Staging', 'Production']) {
    await page.getByRole('heading', { name: phase, exact: true }).waitFor();
  }
  await page.locator('[data-stage="qa-approval"]').getByText('Approval by QA').waitFor();
  await page.locator('[data-schedule="staging"] .fires li').nth(4).waitFor();
  assert.equal(await page.locator('[data-schedule="staging"] .fires li').count(), 5);
  assert.match(await page.locator('[data-schedule="production"] .fires li').first().innerText(), /Sun .* 02:00 CE/);
  await page.locator('[data-environment="production"]').getByText('No release deployed here yet.').waitFor();
  for (const kind of ['apk', 'ipa', 'web', 'asset-bundle', 'db-schema', 'api-spec']) {
    assert.ok(await page.locator(`[data-phase="ci-cd"] .chip[data-kind="${kind}"]`).count() >= 1, `CI/CD shows its ${kind}`);
  }
  // Nothing has run yet: what the page says must be true of this moment.
  assert.equal(await page.locator('.chip[data-built="built"]').count(), 0, 'no artifact looks built before any run');
  assert.ok(await page.locator('.chip[data-built="declared"]').count() >= 6);
  assert.match(await page.locator('[data-stage="feature-flags"] .stage-detail').innerText(),
    /smart-reminders on for 10 %, study-streaks on in production \(none of these flags exists yet\)/);
  assert.equal(await page.getByText(/can be promoted here/).count(), 0, 'no promise of a promotion that cannot happen yet');
  // The navigation: the overview is where we are; runs and flags are one tap away.
  const nav = page.getByRole('navigation', { name: 'Main' });
  assert.equal(await nav.getByRole('link', { name: 'Overview' }).getAttribute('aria-current'), 'page');
  assert.equal(await nav.getByRole('link', { name: 'Runs' }).getAttribute('href'), '/projects/studybuddy/runs');
  assert.equal(await nav.getByRole('link', { name: 'Flags' }).getAttribute('href'), '/projects/studybuddy/flags/development');
  assert.equal(await page.locator('[data-environment="production"]').getByRole('link', { name: 'Flags in production' }).count(), 1);
  const columns = await page.$$eval('.phase', (phases) => new Set(phases.map((p) => Math.round(p.getBoundingClientRect().top))).size);
  assert.equal(columns, 1, 'on a desktop the four phases stand side by side');
  await shot(page, 'overview-desktop');
  assert.match(await page.locator('.definition-info').innerText(), /someone-with-a-long-name/);
  await assertFitsPhone(page, 'the overview');
  await shot(page, 'overview-phone-first');
  await page.close();
});

test('a change made through the API appears in the open page without a reload', async () => {
  const page = await browser.context.newPage();
  await signIn(page, portal, 'dana');
  await hydrated(page);
  await page.evaluate(() => { window.__not_reloaded = true; });
  const token = portal.cli(['token', 'create', 'e2e-ci', '--scope', 'definition:write']).trim().split('\n').pop();
  const changed = readFileSync(sample, 'utf8').replace('name: StudyBuddy', 'name: StudyBuddy Live');
  const response = await fetch(`${portal.url}/api/v1/projects/studybuddy/definition`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${token}` },
    body: changed,
  });
  assert.equal(response.status, 201);
  await page.getByRole('heading', { name: 'StudyBuddy Live' }).waitFor({ timeout: 3000 });
  assert.equal(await page.evaluate(() => window.__not_reloaded), true, 'the page was not reloaded');
  await page.close();
});

test('a viewer who tries to pause a schedule is told which role it needs', async () => {
  const page = await browser.context.newPage();
  await signIn(page, portal, 'vera');
  await hydrated(page);
  await page.locator('[data-schedule="production"]').getByRole('button', { name: 'Pause' }).click();
  const alert = page.getByRole('alert');
  await alert.waitFor();
  assert.match(await alert.innerText(), /needs the release manager or admin role; you are signed in as vera \(viewer\)/);
  assert.equal(await page.locator('[data-schedule="production"] .paused-note').count(), 0);
  await shot(page, 'viewer-refused-desktop');
  await page.close();
});

test('on a phone the phases stack and a release manager pauses and resumes a schedule', async () => {
  const page = await browser.context.newPage({ viewport: PHONE });
  await page.setViewportSize(PHONE);
  await signIn(page, portal, 'rhea');
  await hydrated(page);
  // Signing in moves to the overview in the page, which then loads the pipeline: wait for it.
  await page.locator('.phase').nth(3).waitFor();
  const tops = await page.$$eval('.phase', (phases) => phases.map((p) => p.getBoundingClientRect()));
  assert.equal(tops.length, 4);
  for (let i = 1; i < tops.length; i++) assert.ok(tops[i].top >= tops[i - 1].bottom, 'phases are stacked');
  await assertFitsPhone(page, 'the overview');
  const schedule = page.locator('[data-schedule="staging"]');
  await schedule.getByRole('button', { name: 'Pause' }).click();
  await schedule.getByText('Paused by rhea').waitFor();
  await shot(page, 'overview-phone');
  await schedule.getByRole('button', { name: 'Resume' }).click();
  await schedule.locator('.fires li').first().waitFor();
  await page.setViewportSize(DESKTOP);
  await page.close();
});

test('the page and the app it loads arrive compressed, under content-hashed names cached for a year', async () => {
  const page = await browser.context.newPage();
  const loaded = new Map();
  page.on('response', (response) => {
    const path = new URL(response.url()).pathname;
    if (path.startsWith('/pkg/')) loaded.set(path, response.headers()['cache-control']);
  });
  await signIn(page, portal, 'vera');
  await hydrated(page);
  const named = {};
  for (const ext of ['js', 'wasm', 'css']) {
    const file = [...loaded.keys()].find((path) => path.endsWith(`.${ext}`));
    assert.ok(file, `the page loaded a .${ext} from /pkg (loaded: ${[...loaded.keys()].join(', ')})`);
    assert.match(file, new RegExp(`^/pkg/flightdeck\\.[A-Za-z0-9_-]{16,}\\.${ext}$`), 'named after its content');
    assert.equal(loaded.get(file), 'public, max-age=31536000, immutable', file);
    named[ext] = file;
  }
  const wasm = await page.request.get(`${portal.url}${named.wasm}`, { headers: { 'accept-encoding': 'br, gzip' } });
  assert.equal(wasm.status(), 200);
  assert.equal(wasm.headers()['content-encoding'], 'br', 'brotli: precompressed by a release build, else as it is sent');
  const gzipOnly = await page.request.get(`${portal.url}${named.js}`, { headers: { 'accept-encoding': 'gzip' } });
  assert.equal(gzipOnly.headers()['content-encoding'], 'gzip');
  const unknown = await page.request.get(`${portal.url}/pkg/flightdeck.wasm`);
  assert.equal(unknown.status(), 404, 'the unhashed name is gone');
  assert.equal(unknown.headers()['cache-control'], 'no-cache', 'a miss is not cached');
  const overview = await page.request.get(`${portal.url}/`, { headers: { 'accept-encoding': 'gzip' } });
  assert.equal(overview.status(), 200);
  assert.equal(overview.headers()['content-encoding'], 'gzip', 'pages are compressed as they are sent');
  await page.close();
});
