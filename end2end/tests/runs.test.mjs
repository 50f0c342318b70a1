// Runs: start one from the page, watch its log stream in, open an artifact, re-run a failed
// job; the run page on a phone.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { startPortal, launchBrowser, signIn, hydrated, shot, assertFitsPhone, PHONE } from '../lib/harness.mjs';

let portal;
let browser;
const marker = join(mkdtempSync(join(tmpdir(), 'flightdeck-e2e-marker-')), 'tried');

const pipeline = `
project: { name: Pocket, key: pocket, description: A small app for the browser tests. }
phases:
  ci:
    title: CI
    stages:
      checks:
        title: Checks
        jobs:
          stream:
            steps:
              - for i in $(seq 1 40); do printf '\\033[32mline %s\\033[0m of the build\\n' "$i"; sleep 0.1; done
              - mkdir -p out && echo "report for $FLIGHTDECK_COMMIT" > out/report.txt
            artifacts: [{ name: report, path: out/report.txt, kind: report }]
          flaky:
            steps:
              - test -f ${marker} || { touch ${marker}; echo "failing on purpose the first time" >&2; exit 1; }
      package:
        title: Package
        jobs:
          bundle:
            steps:
              - echo bundled
`;

let repo;

before(async () => {
  repo = mkdtempSync(join(tmpdir(), 'flightdeck-e2e-repo-'));
  writeFileSync(join(repo, 'flightdeck.yml'), pipeline);
  const git = (...args) => execFileSync('git', ['-C', repo, ...args]);
  git('init', '-q', '--initial-branch=main');
  git('add', '-A');
  git('-c', 'user.name=Pia Pocket', '-c', 'user.email=pia@example.com', 'commit', '-q', '-m', 'Build the pocket app');
  portal = await startPortal({ dev: 'developer', vera: 'viewer' }, join(repo, 'flightdeck.yml'));
  portal.cli(['project', 'set-repository', 'pocket', repo]);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await portal?.stop();
  // Nothing of the test stays behind in /tmp.
  rmSync(dirname(marker), { recursive: true, force: true });
  if (repo) rmSync(repo, { recursive: true, force: true });
});

test('a developer starts a run, watches the log stream in and downloads an artifact', async () => {
  const page = await browser.context.newPage();
  await signIn(page, portal, 'dev', '/projects/pocket/runs');
  await hydrated(page);
  await page.getByText('No runs here yet').waitFor();
  await page.getByRole('button', { name: 'Run pipeline' }).click();
  await page.waitForURL(/\/projects\/pocket\/runs\/1$/);
  await hydrated(page);
  await page.locator('[data-job="stream"]').getByRole('link').click();
  await page.waitForURL(/jobs\/stream/);
  await hydrated(page);
  // Lines arrive while the job runs, without a reload.
  await page.locator('.log-line', { hasText: 'line 5 of the build' }).waitFor({ timeout: 20_000 });
  await page.evaluate(() => { window.__kept = true; });
  await page.locator('.log-line', { hasText: 'line 40 of the build' }).waitFor({ timeout: 20_000 });
  assert.equal(await page.evaluate(() => window.__kept), true, 'the log streamed into the same page');
  const green = page.locator('.log-line', { hasText: 'line 40 of the build' }).locator('.ansi-fg-2');
  assert.equal(await green.count(), 1, 'ANSI colours are rendered');
  // The counter keeps up with the lines shown.
  await page.waitForFunction(() => document.querySelector('.log-count')?.textContent === `${document.querySelectorAll('.log-line').length} lines`);
  await page.locator('h1 .state-succeeded').waitFor({ timeout: 20_000 });
  assert.equal(await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Runs' }).getAttribute('aria-current'), 'page');
  await shot(page, 'job-log-desktop');

  // A link to a line lands on it, below the sticky top bar, marked.
  const jobUrl = page.url().split('#')[0];
  await page.goto(`${jobUrl}#L30`);
  await hydrated(page);
  const line30 = page.locator('#L30');
  await line30.waitFor();
  await page.waitForFunction(() => document.querySelector('#L30')?.classList.contains('selected'));
  const barBottom = await page.locator('.topbar').evaluate((e) => e.getBoundingClientRect().bottom);
  const lineTop = await line30.evaluate((e) => e.getBoundingClientRect().top);
  assert.ok(lineTop >= barBottom, `line 30 is below the top bar (line at ${lineTop}, bar ends at ${barBottom})`);
  await page.locator('#L12 .log-no').click();
  await page.waitForFunction(() => document.querySelector('#L12')?.classList.contains('selected') && !document.querySelector('#L30').classList.contains('selected'));
  await shot(page, 'job-log-line-link');

  await page.goto(`${portal.url}/projects/pocket/runs/1`);
  await hydrated(page);
  const link = page.locator('[data-artifact="report"] a');
  await link.waitFor();
  const response = await page.request.get(new URL(await link.getAttribute('href'), portal.url).toString());
  assert.equal(response.status(), 200);
  assert.match(await response.text(), /^report for [0-9a-f]{40}\n$/);
  assert.match(response.headers()['x-checksum-sha256'], /^[0-9a-f]{64}$/);
  await page.close();
});

test('a failed job is re-run from its page and then succeeds', async () => {
  const page = await browser.context.newPage();
  await signIn(page, portal, 'dev', '/projects/pocket/runs/1/jobs/flaky');
  await hydrated(page);
  await page.locator('h1 .state-failed').waitFor({ timeout: 30_000 });
  await page.locator('.log-stderr', { hasText: 'failing on purpose the first time' }).waitFor();
  // The stage after it was skipped: its job says why and offers nothing that would not help.
  const skipped = await browser.context.newPage();
  await skipped.goto(`${portal.url}/projects/pocket/runs/1/jobs/bundle`);
  await hydrated(skipped);
  await skipped.locator('h1 .state-skipped').waitFor({ timeout: 30_000 });
  await skipped.getByText('Skipped: this job did not run').waitFor();
  assert.equal(await skipped.getByRole('button', { name: 'Re-run job' }).count(), 0);
  assert.equal(await skipped.getByLabel('Follow').count(), 0);
  const note = await skipped.locator('.log-empty').evaluate((e) => {
    const box = e.getBoundingClientRect(); const outer = e.parentElement.getBoundingClientRect();
    return { left: box.left - outer.left, inner: parseFloat(getComputedStyle(e).paddingLeft) };
  });
  assert.ok(note.inner >= 8, `the note keeps off the box's edge (${note.inner}px)`);
  await assertFitsPhone(skipped, 'a skipped job');
  await skipped.close();
  await page.getByRole('button', { name: 'Re-run job' }).click();
  await page.locator('h1 .state-succeeded').waitFor({ timeout: 30_000 });
  await page.goto(`${portal.url}/projects/pocket/runs/1`);
  await page.locator('h1 .state-succeeded').waitFor({ timeout: 60_000 }); // the skipped stage runs too
  await page.close();
});

test('the run page on a phone stacks the stages, and a viewer is not offered to start runs', async () => {
  const page = await browser.context.newPage({ viewport: PHONE });
  await page.setViewportSize(PHONE);
  await signIn(page, portal, 'vera', '/projects/pocket/runs/1');
  await hydrated(page);
  await page.locator('[data-job="stream"]').waitFor();
  await assertFitsPhone(page, 'the run page');
  await shot(page, 'run-phone');
  await page.goto(`${portal.url}/projects/pocket/runs`);
  await hydrated(page);
  // A viewer is not offered what would be refused, and is told who may.
  await page.getByText('Starting a run needs the developer, release manager or admin role.').waitFor();
  assert.equal(await page.getByRole('button', { name: 'Run pipeline' }).count(), 0);
  await assertFitsPhone(page, 'the runs list');
  await shot(page, 'runs-phone');
  await page.goto(`${portal.url}/projects/pocket/runs/1/jobs/stream`);
  await hydrated(page);
  await assertFitsPhone(page, 'the job page');
  await shot(page, 'job-phone');
  await page.close();
});
