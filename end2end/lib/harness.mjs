// Starts the real `flightdeck` binary on its embedded PostgreSQL (a fresh data directory per
// test file), and Debian's chromium through playwright-core.

import { spawn, spawnSync, execFile } from 'node:child_process';
import { mkdtempSync, chmodSync, rmSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
export const repo = join(here, '..', '..');
export const sample = join(repo, 'examples', 'studybuddy', 'flightdeck.yml');
const bin = process.env.FLIGHTDECK_BIN;
const siteRoot = process.env.FLIGHTDECK_SITE_ROOT ?? join(repo, 'target', 'site');
if (!bin) throw new Error('FLIGHTDECK_BIN must name the built flightdeck binary (the test command sets it)');

export const PASSWORD = 'correct horse battery staple';
export const screenshots = join(repo, 'end2end', 'screenshots');
mkdirSync(screenshots, { recursive: true });

export const PHONE = { width: 390, height: 844 };

// Every temporary directory the harness makes goes when the test process ends, however it
// ends (a failed start, an assertion before `stop`): browser tests leave nothing in /tmp.
const temporary = new Set();
const running = new Set();
process.on('exit', () => {
  for (const child of running) child.kill('SIGTERM');
  for (const dir of temporary) rmSync(dir, { recursive: true, force: true });
});
function temporaryDir(prefix) {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  temporary.add(dir);
  return dir;
}
export const DESKTOP = { width: 1440, height: 900 };

/** The environment for the binary: the embedded database, quiet logs. */
function portalEnv() {
  const env = { ...process.env, FLIGHTDECK_LOG: 'warn' };
  delete env.DATABASE_URL;
  return env;
}

/** Runs a `flightdeck` CLI command against a data directory; returns stdout. */
export function cli(dataDir, args, input) {
  const result = spawnSync(bin, [...args, '--data-dir', dataDir], {
    input,
    encoding: 'utf8',
    env: portalEnv(),
  });
  if (result.status !== 0) throw new Error(`flightdeck ${args.join(' ')} failed: ${result.stderr}`);
  return result.stdout;
}

/** Like `cli`, without blocking the event loop while the command runs (so a test can watch
 * what happens meanwhile); resolves to stdout. */
export function cliAsync(dataDir, args) {
  return new Promise((resolve, reject) => {
    execFile(bin, [...args, '--data-dir', dataDir], { encoding: 'utf8', env: portalEnv() }, (error, stdout, stderr) => {
      if (error) reject(new Error(`flightdeck ${args.join(' ')} failed: ${stderr || error.message}`));
      else resolve(stdout);
    });
  });
}

/** A running portal with the StudyBuddy sample and the given people ({name: role}). */
export async function startPortal(people = {}, project = sample) {
  const dataDir = temporaryDir('flightdeck-e2e-');
  chmodSync(dataDir, 0o755); // the postgres user must reach the cluster under it
  for (const [name, role] of Object.entries(people)) {
    cli(dataDir, ['user', 'add', name, '--role', role, '--name', title(name), '--password-stdin'], PASSWORD);
  }
  const child = spawn(bin, ['serve', '--addr', '127.0.0.1:0', '--data-dir', dataDir, '--project', project, '--site-root', siteRoot], {
    env: portalEnv(),
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  running.add(child);
  child.on('exit', () => running.delete(child));
  const lines = createInterface({ input: child.stdout });
  let setupLink;
  lines.on('line', (line) => {
    const match = line.match(/(http:\/\/\S+\/setup\/\S+)/);
    if (match) setupLink = match[1];
  });
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('flightdeck did not start within 60 s')), 60_000);
    lines.on('line', (line) => {
      const match = line.match(/listening on (http:\/\/\S+)/);
      if (match) { clearTimeout(timer); resolve(match[1]); }
    });
    child.on('exit', (code) => reject(new Error(`flightdeck exited with ${code}`)));
  });
  return {
    url,
    dataDir,
    get setupLink() { return setupLink; },
    cli: (args, input) => cli(dataDir, args, input),
    cliAsync: (args) => cliAsync(dataDir, args),
    async stop() {
      const exited = new Promise((resolve) => child.on('exit', resolve));
      child.kill('SIGTERM');
      await exited;
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

function title(name) {
  return name.charAt(0).toUpperCase() + name.slice(1);
}

/** A headless Chromium; `{ javaScript: false }` for one that runs no scripts (what a page must
 * still do before its wasm arrives), `viewport` for its first pages' size. */
export async function launchBrowser({ javaScript = true, viewport = DESKTOP } = {}) {
  const profile = temporaryDir('flightdeck-chromium-');
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    viewport,
    javaScriptEnabled: javaScript,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  return {
    context,
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** Waits until the page's WebAssembly has hydrated (buttons then act without a reload). */
export async function hydrated(page) {
  await page.waitForFunction(() => window.__flightdeck_hydrated === true, null, { timeout: 30_000 });
}

/** Signs in through the sign-in form, as a person would. */
export async function signIn(page, portal, name, next = '/') {
  await page.goto(`${portal.url}/login?next=${encodeURIComponent(next)}`);
  await page.getByLabel('Username').fill(name);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL((u) => !u.pathname.startsWith('/login'));
}

/** Saves the whole page, and what the screen shows first, for a person to look at. */
export async function shot(page, name) {
  await page.screenshot({ path: join(screenshots, `${name}.png`), fullPage: true });
  await page.screenshot({ path: join(screenshots, `${name}-screen.png`) });
}

/** Shows the page at a phone's width and checks what every page must get right there: nothing
 * scrolls sideways, and every table cell is shown whole (no column hidden or cut off at the
 * right). Leaves the page at the phone's width. */
export async function assertFitsPhone(page, what = page.url()) {
  await page.setViewportSize(PHONE);
  const report = await page.evaluate(() => new Promise((resolve) => requestAnimationFrame(() => {
    const width = window.innerWidth;
    const describe = (e) => `${e.tagName.toLowerCase()}${e.className && typeof e.className === 'string' ? '.' + e.className.trim().split(/\s+/).join('.') : ''} "${(e.textContent ?? '').trim().slice(0, 40)}"`;
    const overflow = document.documentElement.scrollWidth - width;
    const wide = overflow > 0
      ? [...document.querySelectorAll('body *')]
        .filter((e) => e.getBoundingClientRect().right > width + 0.5 && getComputedStyle(e).position !== 'fixed')
        .slice(-3).map(describe)
      : [];
    const cells = [...document.querySelectorAll('table td')].filter((td) => td.closest('tr'));
    const hidden = cells.filter((td) => {
      const box = td.getBoundingClientRect();
      return getComputedStyle(td).display === 'none' || box.width === 0 || box.right > width + 0.5;
    }).slice(0, 3).map((td) => `${td.dataset.label ?? 'a cell'}: ${describe(td)}`);
    const clippedNav = [...document.querySelectorAll('.nav-link')]
      .filter((a) => a.getBoundingClientRect().right > width + 0.5).map(describe);
    resolve({ overflow, wide, hidden, clippedNav });
  })));
  if (report.overflow > 0) {
    throw new Error(`${what} scrolls sideways by ${report.overflow} px at ${PHONE.width} px; too wide: ${report.wide.join('; ')}`);
  }
  if (report.clippedNav.length > 0) {
    throw new Error(`${what}: the navigation is cut off at ${PHONE.width} px: ${report.clippedNav.join('; ')}`);
  }
  if (report.hidden.length > 0) {
    throw new Error(`${what} hides or cuts off table cells at ${PHONE.width} px: ${report.hidden.join('; ')}`);
  }
}
