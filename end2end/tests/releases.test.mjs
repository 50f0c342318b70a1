// Releases: a green run makes a release; a product manager edits its notes; QA approves a
// deployment waiting at its gate on a desktop; a product manager accepts it from the inbox on a
// tablet and a phone. Every page fits a phone.
//
// The green run's release goes into staging by itself (its deploy stage ends the CI part); the
// deployer takes it to the QA gate, and everything after that is people on the pages.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startPortal, launchBrowser, signIn, hydrated, shot, assertFitsPhone, PHONE } from '../lib/harness.mjs';

const TABLET = { width: 768, height: 1024 };

const pipeline = `
project: { name: Shop, key: shop, description: A small shop for the release tests. }
environments:
  staging:
    url: /env/staging/
    protection: { required_approvals: 0, allowed_roles: [developer, qa, release-manager] }
  production:
    url: /env/production/
    protection: { required_approvals: 1, allowed_roles: [release-manager] }
    # Open one hour on 29 February: closed whenever this test runs.
    deploy_window: { schedule: "0 2 29 2 *", duration: 1h, timezone: Europe/Berlin }
phases:
  ci:
    title: CI
    stages:
      checks:
        title: Checks
        jobs:
          test:
            steps: [echo tested]
  staging:
    title: Staging
    stages:
      deploy-staging:
        title: Deploy to staging
        deploy: { environment: staging }
      qa-approval:
        title: QA approval
        gate: { role: qa, approvals: 1 }
      user-acceptance:
        title: User acceptance
        gate: { role: product, approvals: 1 }
  production:
    title: Production
    stages:
      deploy-production:
        title: Deploy to production
        deploy: { environment: production }
`;

let portal;
let browser;
let repo;

/** Runs SQL on the portal's embedded database (root reaches its private socket). */
function sql(statement) {
  return execFileSync('psql', ['-h', join(portal.dataDir, 'postgres', 'run'), '-U', 'flightdeck', '-d', 'flightdeck',
    '-v', 'ON_ERROR_STOP=1', '-At', '-c', statement], { encoding: 'utf8' }).trim();
}

before(async () => {
  repo = mkdtempSync(join(tmpdir(), 'flightdeck-e2e-repo-'));
  writeFileSync(join(repo, 'flightdeck.yml'), pipeline);
  const git = (...args) => execFileSync('git', ['-C', repo, ...args]);
  git('init', '-q', '--initial-branch=main');
  git('add', '-A');
  git('-c', 'user.name=Dev Eloper', '-c', 'user.email=dev@example.com', 'commit', '-q', '-m', 'Checkout in one step');
  portal = await startPortal({ dev: 'developer', quinn: 'qa', pam: 'product', rita: 'release-manager', rob: 'release-manager' }, join(repo, 'flightdeck.yml'));
  portal.cli(['project', 'set-repository', 'shop', repo]);
  browser = await launchBrowser();
  // A green run of main makes release 1 and its deployment into staging.
  const page = await browser.context.newPage();
  await signIn(page, portal, 'dev', '/projects/shop/runs');
  await hydrated(page);
  await page.getByRole('button', { name: 'Run pipeline' }).click();
  await page.waitForURL(/\/projects\/shop\/runs\/1$/);
  await page.locator('h1 .state-succeeded').waitFor({ timeout: 60_000 });
  await page.close();
});

after(async () => {
  await browser?.close();
  await portal?.stop();
  if (repo) rmSync(repo, { recursive: true, force: true });
});

test('a product manager edits the release notes; the releases list shows where it stands', async () => {
  const page = await browser.context.newPage();
  await signIn(page, portal, 'pam', '/projects/shop/releases');
  await hydrated(page);
  const row = page.locator('.release-row').first();
  await row.waitFor({ timeout: 30_000 });
  const version = await row.getAttribute('data-release');
  assert.match(version, /^\d{4}\.\d{2}\.\d{2}-1$/);
  await row.locator('[data-environment="staging"]').waitFor();
  await assertFitsPhone(page, 'the releases list');
  await page.setViewportSize({ width: 1440, height: 900 });
  await row.locator('.release-link').click();
  await page.waitForURL(new RegExp(`/releases/${version.replace(/\./g, '\\.')}$`));
  await hydrated(page);
  await page.getByRole('heading', { name: `Release ${version}` }).waitFor();
  await page.getByRole('button', { name: 'Edit notes' }).click();
  await page.getByRole('textbox', { name: 'Release notes' }).fill('- Checkout in one step\n- Try it with the new-checkout flag');
  await page.getByRole('button', { name: 'Save notes' }).click();
  await page.locator('.notes-edited', { hasText: 'Edited by pam' }).waitFor();
  await page.locator('pre.notes', { hasText: 'Try it with the new-checkout flag' }).waitFor();
  assert.equal(sql(`select count(*) from audit_event where action = 'release.notes_edited'`), '1');
  // Product managers deploy nowhere here: no Promote button.
  assert.equal(await page.getByRole('button', { name: /^Promote to/ }).count(), 0);
  await shot(page, 'release-desktop');
  await assertFitsPhone(page, 'the release page');
  await shot(page, 'release-phone');
  await page.close();
});

test('QA approves a deployment waiting at its gate, on a desktop', async () => {
  const page = await browser.context.newPage();
  await signIn(page, portal, 'quinn', '/projects/shop/deployments/1');
  await hydrated(page);
  const gate = page.locator('[data-stage="qa-approval"]');
  await gate.locator('.state-waiting').waitFor({ timeout: 30_000 });
  // Not offered at the later gate, which is QA's to pass first.
  assert.equal(await page.locator('[data-stage="user-acceptance"] [data-decision]').count(), 0);
  await shot(page, 'deployment-gate-desktop');
  await gate.locator('[data-decision="approve"] button').click();
  await gate.locator('.state-succeeded').waitFor({ timeout: 30_000 });
  await gate.locator('.decision', { hasText: 'quinn approved' }).waitFor();
  await assertFitsPhone(page, 'the deployment page');
  await shot(page, 'deployment-phone');
  await page.goto(`${portal.url}/projects/shop/environments/staging`);
  await hydrated(page);
  await page.locator('.deployment-row[data-deployment="1"]').waitFor();
  await assertFitsPhone(page, 'the environment page');
  await shot(page, 'environment-phone');
  await page.close();
});

test('a product manager accepts the release from the inbox on a tablet and a phone', async () => {
  const page = await browser.context.newPage({ viewport: TABLET });
  await page.setViewportSize(TABLET);
  await signIn(page, portal, 'pam', '/inbox');
  await hydrated(page);
  const badge = page.getByRole('navigation', { name: 'Main' }).locator('.badge');
  await badge.waitFor({ timeout: 30_000 });
  assert.equal(await badge.textContent(), '1');
  const card = page.locator('.inbox-item').first();
  await card.waitFor();
  await card.locator('.qa-verdict', { hasText: 'quinn approved' }).waitFor();
  await card.getByRole('link', { name: 'Try it on staging' }).waitFor();
  assert.equal(await card.getByRole('link', { name: 'Try it on staging' }).getAttribute('href'), '/env/staging/');
  await card.locator('pre.notes', { hasText: 'new-checkout flag' }).waitFor();
  await shot(page, 'inbox-tablet');
  await assertFitsPhone(page, 'the inbox');
  await shot(page, 'inbox-phone');
  await card.getByLabel('Comment (optional)').fill('Checkout feels right');
  await card.getByRole('button', { name: 'Accept' }).click();
  await page.getByText('Nothing waits for you').waitFor({ timeout: 30_000 });
  await badge.waitFor({ state: 'detached', timeout: 30_000 });
  assert.equal(sql(`select state from deployment where number = 1`), 'succeeded');
  assert.equal(sql(`select count(*) from audit_event where action = 'deployment.approved'`), '2');
  await page.setViewportSize(PHONE);
  await page.goto(`${portal.url}/projects/shop`);
  await hydrated(page);
  await assertFitsPhone(page, 'the overview');
  await page.close();
});

test('a release manager deploys the accepted release to production: another approves, she overrides the window', async () => {
  const page = await browser.context.newPage();
  await signIn(page, portal, 'rita', '/projects/shop/releases');
  await hydrated(page);
  const version = await page.locator('.release-row').first().getAttribute('data-release');
  await page.goto(`${portal.url}/projects/shop/releases/${version}`);
  await hydrated(page);
  await page.getByRole('button', { name: 'Promote to production' }).click();
  await page.waitForURL(/\/projects\/shop\/deployments\/2$/);
  await hydrated(page);
  const deploy = page.locator('[data-stage="deploy-production"]');
  await deploy.locator('.state-waiting').waitFor({ timeout: 30_000 });
  await deploy.getByText(/0 of 1 approval by someone other than rita/).waitFor({ timeout: 30_000 });
  // Rita asked for it, so the page does not offer her Approve.
  assert.equal(await deploy.locator('[data-decision="approve"]').count(), 0);
  await page.close();

  const robPage = await browser.context.newPage();
  await signIn(robPage, portal, 'rob', '/projects/shop/deployments/2');
  await hydrated(robPage);
  await robPage.locator('[data-stage="deploy-production"] [data-decision="approve"] button').click();
  // Approved, it now waits for the window — checked as it starts.
  await robPage.locator('[data-stage="deploy-production"]').getByText(/outside the deploy window/).waitFor({ timeout: 30_000 });
  await robPage.close();

  const onCall = await browser.context.newPage();
  await onCall.setViewportSize(PHONE);
  await signIn(onCall, portal, 'rita', '/projects/shop/deployments/2');
  await hydrated(onCall);
  const stage = onCall.locator('[data-stage="deploy-production"]');
  await stage.getByText(/outside the deploy window/).waitFor({ timeout: 30_000 });
  await assertFitsPhone(onCall, 'the production deployment waiting for its window');
  await shot(onCall, 'production-window-phone');
  await stage.getByPlaceholder('Why deploy now? (required)').fill('Checkout fix the shop needs before the weekend');
  await stage.getByRole('button', { name: 'Override the window' }).click();
  await stage.locator('.state-succeeded').waitFor({ timeout: 30_000 });
  await shot(onCall, 'production-deployed-phone');
  assert.equal(sql(`select current_release from environment where name = 'production'`), version);
  assert.equal(sql(`select count(*) from audit_event where action = 'deployment.window_overridden' and security`), '1');
  await onCall.close();
});
