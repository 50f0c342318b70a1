// Rolling back from a phone: whoever is on call opens production's page at 390×844, taps
// Roll back, reads the confirm sheet (release X → Y, what each step does), confirms, and watches
// the steps until production runs the release before. It works with JavaScript off (a plain
// form post, a page that reloads itself), and a double tap makes one rollback.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startPortal, launchBrowser, signIn, hydrated, shot, assertFitsPhone, PHONE } from '../lib/harness.mjs';

const pipeline = `
project: { name: Shop, key: shop, description: A small shop for the rollback tests. }
environments:
  production:
    protection: { required_approvals: 0, allowed_roles: [developer, release-manager] }
    database: { name: shop_production }
rollback:
  manual: { roles: [release-manager] }
phases:
  ci:
    title: CI
    stages:
      build:
        title: Build
        jobs:
          web:
            steps: ["mkdir -p dist && cp index.html dist/"]
            artifacts:
              - { name: web, path: dist, kind: web }
              - { name: db-schema, path: db, kind: db-schema }
      deploy-production:
        title: Deploy to production
        deploy:
          environment: production
          publish: [web]
          migrate: db-schema
          job: { steps: ["echo deploying $FLIGHTDECK_RELEASE"] }
      feature-flags:
        title: Feature flags
        flags: { environment: production, set: { new-checkout: { enabled: true } } }
`;

let portal;
let browser;
let repo;

function sql(statement, database = 'flightdeck') {
  return execFileSync('psql', ['-h', join(portal.dataDir, 'postgres', 'run'), '-U', 'flightdeck', '-d', database,
    '-v', 'ON_ERROR_STOP=1', '-At', '-c', statement], { encoding: 'utf8' }).trim();
}

async function until(what, check, timeout = 90_000) {
  const started = Date.now();
  for (;;) {
    if (await check()) return;
    if (Date.now() - started > timeout) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

/** Commits a page saying `words`, runs the pipeline as the developer, and waits until the
 * release it makes runs in production (deployment `number`). */
async function ship(words, number) {
  writeFileSync(join(repo, 'index.html'), `<!doctype html><title>${words}</title><h1>${words}</h1>`);
  const git = (...args) => execFileSync('git', ['-C', repo, ...args]);
  git('add', '-A');
  git('-c', 'user.name=Dev Eloper', '-c', 'user.email=dev@example.com', 'commit', '-q', '-m', words);
  const page = await browser.context.newPage();
  await signIn(page, portal, 'dev', '/projects/shop/runs');
  await hydrated(page);
  await page.getByRole('button', { name: 'Run pipeline' }).click();
  await page.waitForURL(/\/projects\/shop\/runs\/\d+$/);
  await page.locator('h1 .state-succeeded').waitFor({ timeout: 90_000 });
  await page.close();
  await until(`deployment #${number} succeeded`, () => sql(`select state from deployment where number = ${number}`) === 'succeeded');
}

async function site() {
  return (await fetch(`${portal.url}/env/shop/production/`)).text();
}

before(async () => {
  repo = mkdtempSync(join(tmpdir(), 'flightdeck-e2e-repo-'));
  writeFileSync(join(repo, 'flightdeck.yml'), pipeline);
  mkdirSync(join(repo, 'db'));
  writeFileSync(join(repo, 'db', '0001_orders.sql'), 'create table orders (id serial primary key, total int not null);');
  execFileSync('git', ['-C', repo, 'init', '-q', '--initial-branch=main']);
  portal = await startPortal({ dev: 'developer', rita: 'release-manager' }, join(repo, 'flightdeck.yml'));
  portal.cli(['project', 'set-repository', 'shop', repo]);
  browser = await launchBrowser();
  await ship('Checkout v1', 1);
  // Release 2 brings coupons, with a down script that takes them away again.
  writeFileSync(join(repo, 'db', '0002_coupons.sql'), 'create table coupon (code text primary key, percent int not null);');
  writeFileSync(join(repo, 'db', '0002_coupons.down.sql'), 'drop table coupon;');
  await ship('Checkout v2', 2);
  // Customers redeem coupons before anyone notices what is wrong with v2.
  sql(`insert into orders (total) values (40), (25); insert into coupon values ('WINTER', 10), ('SPRING', 15)`, 'shop_production');
});

after(async () => {
  await browser?.close();
  await portal?.stop();
  if (repo) rmSync(repo, { recursive: true, force: true });
});

test('on a phone with JavaScript off, the on-call release manager rolls production back and watches it finish', async () => {
  assert.match(await site(), /Checkout v2/);
  const v1 = sql(`select r.version from deployment d join release r using (release_id) where d.number = 1`);
  const v2 = sql(`select r.version from deployment d join release r using (release_id) where d.number = 2`);
  const plain = await launchBrowser({ javaScript: false, viewport: PHONE });
  try {
    const page = await plain.context.newPage();
    await signIn(page, portal, 'rita', '/projects/shop/environments/production');
    await page.waitForURL(/\/environments\/production$/);
    // What the phone downloads before Roll back works: the page and its stylesheet (the wasm and
    // its loader may come after; the form works without them). Compressed, as sent.
    const sizes = new Map();
    page.on('requestfinished', async (request) => {
      const { responseBodySize, responseHeadersSize } = await request.sizes();
      sizes.set(request.url(), responseBodySize + responseHeadersSize);
    });
    // As on a first visit: nothing from the cache.
    const cdp = await page.context().newCDPSession(page);
    await cdp.send('Network.setCacheDisabled', { cacheDisabled: true });
    await page.reload({ waitUntil: 'load' });
    await cdp.send('Network.setCacheDisabled', { cacheDisabled: false });
    await until('the page and its stylesheet are measured', () => [...sizes.keys()].some((u) => u.endsWith('.css')));
    // Bytes on the wire as a browser asks for them (compressed); the browser's own count of a
    // stylesheet can be 0 when it came from memory.
    const onWire = (url) => Number(execFileSync('curl', ['-s', '-o', '/dev/null', '-w', '%{size_download}',
      '-H', 'Accept-Encoding: br, gzip', url], { encoding: 'utf8' }));
    const needed = [...sizes].filter(([url]) => !/\.(wasm|js)$/.test(url))
      .map(([url, bytes]) => [url, url.endsWith('.css') ? Math.max(bytes, onWire(url)) : bytes]);
    const weight = needed.reduce((sum, [, bytes]) => sum + bytes, 0);
    console.log(`# before Roll back works, a phone downloads ${weight} bytes: ${needed.map(([u, b]) => `${new URL(u).pathname} ${b}`).join(', ')}`);
    assert.ok(weight <= 300 * 1024, `${weight} bytes before the button works`);
    const sheet = page.locator('.rollback-sheet');
    await sheet.locator('summary', { hasText: `Roll back to ${v1}` }).click();
    await sheet.locator('.sheet-title', { hasText: `${v2} → ${v1}` }).waitFor();
    const steps = await sheet.locator('.rollback-steps li').allTextContents();
    assert.equal(steps.length, 4, steps.join('\n'));
    assert.match(steps[0], /flags back to snapshot #\d+/);
    assert.match(steps[1], new RegExp(`site and config.json back to ${v1.replace(/\./g, '\\.')}`));
    assert.match(steps[2], /deploy job .* runs again/);
    // The database step says what it does and what the safety dump will hold.
    assert.match(steps[3], /^database: the down script of migration 0002 run, newest first, in one transaction; since the deploy: 2 rows inserted in coupon/);
    assert.match(steps[3], /first a safety dump keeps the database as it is \(30 days, downloadable from the rollback's page\)$/);
    // (Whether it fits a phone is checked with JavaScript on, below: the check runs a script.)
    await shot(page, 'rollback-confirm-nojs-phone');
    await sheet.getByRole('button', { name: 'Confirm rollback' }).click();
    await page.waitForURL(/\/projects\/shop\/deployments\/3$/);
    // While it runs the page reloads itself (a refresh for browsers without JavaScript); here the
    // test reloads it, so as not to race the browser's own reloads.
    const first = await page.content();
    if (!first.includes('state-succeeded')) assert.match(first, /http-equiv="refresh"/);
    await until('the rollback page says it succeeded', async () => {
      try {
        await page.reload({ waitUntil: 'load' });
        return (await page.locator('h1 .state-succeeded').count()) > 0;
      } catch {
        return false; // the page's own refresh was navigating
      }
    });
    const states = await page.locator('[data-step]').evaluateAll((items) => items.map((i) => `${i.dataset.step}=${i.dataset.state}`));
    assert.deepEqual(states, ['flags=done', 'site=done', 'jobs=done', 'database=done']);
    await shot(page, 'rollback-done-nojs-phone');
    // The coupons written since the deploy are in the safety dump, a tap away.
    const backup = page.locator('.backup', { hasText: 'safety dump' });
    await backup.scrollIntoViewIfNeeded();
    await shot(page, 'rollback-safety-dump-phone');
    const [download] = await Promise.all([
      page.waitForEvent('download'),
      backup.getByRole('link', { name: /^Download shop_production-.*-safety\.dump$/ }).click(),
    ]);
    const file = await download.path();
    const dump = readFileSync(file);
    assert.equal(dump.subarray(0, 5).toString(), 'PGDMP', 'a pg_dump custom-format file');
    const listed = execFileSync('pg_restore', ['--list', file], { encoding: 'utf8' });
    assert.match(listed, /TABLE DATA public coupon/);
  } finally {
    await plain.close();
  }
  assert.match(await site(), /Checkout v1/);
  assert.equal(sql(`select current_release from environment where name = 'production'`), v1);
  assert.equal(sql(`select count(*) from deployment where kind = 'rollback'`), '1');
  assert.equal(sql(`select count(*) from audit_event where action = 'deployment.rolled_back'`), '1');
  assert.equal(sql(`select count(*) from audit_event where action = 'database_backup.downloaded' and outcome = 'ok'`), '1');
  // Release 1's schema is back: no coupon table, the orders kept.
  assert.equal(sql(`select to_regclass('public.coupon') is null`, 'shop_production'), 't');
  assert.equal(sql(`select count(*) from orders`, 'shop_production'), '2');
});

test('with JavaScript, a double tap on Confirm makes one rollback, whose steps go live to the end', async () => {
  await ship('Checkout v3', 4);
  assert.match(await site(), /Checkout v3/);
  const page = await browser.context.newPage();
  await page.setViewportSize(PHONE);
  await signIn(page, portal, 'rita', '/projects/shop/environments/production');
  await hydrated(page);
  await page.locator('.env-current', { hasText: 'Runs' }).waitFor();
  await shot(page, 'environment-oncall-phone');
  const sheet = page.locator('.rollback-sheet');
  await sheet.locator('summary').click();
  await sheet.locator('.sheet-title').waitFor();
  await assertFitsPhone(page, 'the confirm sheet');
  await shot(page, 'rollback-confirm-phone');
  await sheet.getByRole('button', { name: 'Confirm rollback' }).dblclick();
  await page.waitForURL(/\/projects\/shop\/deployments\/5$/);
  await hydrated(page);
  await page.locator('h1 .state-succeeded').waitFor({ timeout: 90_000 });
  await page.locator('[data-step="database"][data-state="done"]').waitFor();
  await assertFitsPhone(page, 'the rollback progress');
  await shot(page, 'rollback-done-phone');
  assert.equal(sql(`select count(*) from deployment where kind = 'rollback'`), '2');
  assert.equal(sql(`select count(*) from deployment where kind = 'rollback' and rolls_back_id = (select deployment_id from deployment where number = 4)`), '1');
  // It rolled back to the last good release: v2 was rolled back itself, so v1.
  assert.match(await site(), /Checkout v1/);
  // The environment's history marks rollbacks, with who asked.
  await page.goto(`${portal.url}/projects/shop/environments/production`);
  await hydrated(page);
  await page.locator('.deployment-row[data-deployment="5"]', { hasText: 'rollback, asked for by rita' }).waitFor();
  await assertFitsPhone(page, 'the environment after a rollback');
  await shot(page, 'environment-after-rollback-phone');
  await page.close();
});
