// The flags page: a developer creates a flag, switches it on and rolls it out; a release manager
// on a phone flips the kill switch; history shows what changed and a snapshot is restored. An
// unmodified Unleash frontend SDK watches the same environment and sees every change.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { UnleashClient } from 'unleash-proxy-client';
import { startPortal, launchBrowser, signIn, hydrated, shot, assertFitsPhone, PHONE, DESKTOP } from '../lib/harness.mjs';

let portal;
let browser;
let sdk;

before(async () => {
  portal = await startPortal({ dana: 'developer', rhea: 'release-manager', rob: 'release-manager', vera: 'viewer' });
  browser = await launchBrowser();
});

after(async () => {
  sdk?.stop();
  await browser?.close();
  await portal?.stop();
});

/** An Unleash frontend SDK for an environment, refreshing every second. */
async function startSdk(environment, userId) {
  const token = portal.cli(['flags', 'sdk-token', 'create', '--project', 'studybuddy', '--environment', environment,
    '--kind', 'frontend', `browser-test-${environment}`]).trim().split('\n').pop();
  const client = new UnleashClient({
    url: `${portal.url}/api/frontend`,
    clientKey: token,
    appName: 'studybuddy-web',
    refreshInterval: 1,
    disableMetrics: true,
    context: { userId },
  });
  await client.start();
  return client;
}

/** Waits until `check()` holds, polling; returns the milliseconds it took. */
async function until(check, what, timeout = 3000) {
  const started = Date.now();
  while (!check()) {
    if (Date.now() - started > timeout) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return Date.now() - started;
}

test('a developer creates a flag, switches it on and rolls it out; the SDK follows', async () => {
  sdk = await startSdk('staging', 'user-7');
  const page = await browser.context.newPage();
  await signIn(page, portal, 'dana', '/projects/studybuddy/flags/staging');
  await hydrated(page);
  await page.getByRole('heading', { name: 'No flags yet' }).waitFor();

  await page.getByText('Create a flag').click();
  await page.getByLabel('Flag name').fill('smart-reminders');
  await page.getByLabel('Description').fill('Reminds students before a study session');
  await page.getByRole('button', { name: 'Create flag' }).click();
  const card = page.locator('[data-flag="smart-reminders"]');
  await card.getByText('Off for everyone').waitFor();
  assert.equal(sdk.isEnabled('smart-reminders'), false);
  // The create form closed, emptied for the next flag.
  await page.waitForFunction(() => document.querySelector('details.add-form')?.open === false);
  await page.getByText('Create a flag').click();
  assert.equal(await page.locator('details.add-form').getByLabel('Flag name').inputValue(), '');
  await page.getByText('Create a flag').click();

  await card.getByRole('switch', { name: 'smart-reminders: turn on' }).click();
  await card.getByText('On for everyone').waitFor();
  const seenOn = await until(() => sdk.isEnabled('smart-reminders'), 'the SDK to see the flag on');
  console.log(`the SDK saw the flag switched on ${seenOn} ms after the page showed it`);

  // A rollout of 0 % turns it off for user-7, 100 % back on.
  // Saving folds the editor; open it when it is folded.
  const editor = card.getByRole('button', { name: 'Change rollout, strategies or variants' });
  const openEditor = async () => {
    if ((await editor.getAttribute('aria-expanded')) !== 'true') await editor.click();
  };
  await openEditor();
  await card.getByRole('slider').fill('0');
  await card.getByText('Gradual rollout: 0 %').waitFor();
  await card.getByRole('button', { name: 'Save rollout' }).click();
  await card.getByText('On for 0 % of users').waitFor();
  await until(() => !sdk.isEnabled('smart-reminders'), 'the SDK to leave user-7 out of a 0 % rollout');
  await openEditor();
  await card.getByRole('slider').fill('100');
  await card.getByRole('button', { name: 'Save rollout' }).click();
  await card.getByText('On for 100 % of users').waitFor();
  await until(() => sdk.isEnabled('smart-reminders'), 'the SDK to see the 100 % rollout');

  // Details are the same in every environment: name an owner and mark the flag stale.
  await openEditor();
  await card.locator('.details-form').getByLabel('Owner').fill('growth team');
  await card.locator('.details-form').getByLabel(/Stale/).check();
  await card.getByRole('button', { name: 'Save details (every environment)' }).click();
  await card.locator('.chip', { hasText: 'stale' }).waitFor();
  await card.getByText('owner growth team').waitFor();

  // The history says what each change did.
  const history = page.locator('.history');
  await history.getByText('smart-reminders: gradual rollout: rollout 0 % → 100 %').or(history.getByText(/rollout.*100/)).first().waitFor();
  await shot(page, 'flags-desktop');
  await page.close();
});

test('a viewer sees the flags but cannot switch them', async () => {
  const page = await browser.context.newPage();
  await signIn(page, portal, 'vera', '/projects/studybuddy/flags/staging');
  await hydrated(page);
  await page.getByText(/You can look\. Flags in staging are changed by the developer, QA, release manager or admin role/i).waitFor();
  assert.equal(await page.locator('[data-flag="smart-reminders"]').getByRole('switch').isDisabled(), true);
  assert.equal(await page.getByText('Kill switch', { exact: true }).count(), 0);
  assert.equal(await page.getByText('Create a flag').count(), 0);
  await page.close();
});

test('on a phone a release manager flips the kill switch and restores the flags afterwards', async () => {
  const context = browser.context;
  const page = await context.newPage();
  await page.setViewportSize(PHONE);
  await signIn(page, portal, 'rhea', '/projects/studybuddy/flags/staging');
  await hydrated(page);
  const card = page.locator('[data-flag="smart-reminders"]');
  await card.getByText('On for 100 % of users').waitFor();
  const before = Number(await page.locator('.history-entry').first().getAttribute('data-version'));

  await assertFitsPhone(page, 'the flags page');
  const kill = card.getByRole('button', { name: 'Kill switch', exact: true });
  const box = await kill.boundingBox();
  assert.ok(box.height >= 48 && box.width >= PHONE.width * 0.7, `the kill switch is one big tap (${box.width}×${box.height})`);
  await kill.click();
  await shot(page, 'flags-kill-confirm-phone');
  assert.equal(sdk.isEnabled('smart-reminders'), true, 'nothing happens before the confirmation');
  const tapped = Date.now();
  await card.getByRole('button', { name: 'Yes, turn it off' }).click();
  await card.getByText('Off for everyone').waitFor();
  await until(() => !sdk.isEnabled('smart-reminders'), 'the SDK to see the kill switch');
  console.log(`the SDK saw the kill switch ${Date.now() - tapped} ms after the tap`);
  await page.locator('.history-entry').first().getByText('smart-reminders killed').waitFor();
  await shot(page, 'flags-killed-phone');

  // Restore the snapshot from before the kill: the flag is back on for the SDK.
  const entry = page.locator(`.history-entry[data-version="${before}"]`);
  await entry.getByRole('button', { name: `Restore snapshot ${before}` }).click();
  await entry.getByRole('button', { name: 'Yes, restore' }).click();
  await page.getByText(/Restored: the flags are now snapshot/).waitFor();
  await card.getByText('On for 100 % of users').waitFor();
  await until(() => sdk.isEnabled('smart-reminders'), 'the SDK to see the restored flag');

  // Restoring the same snapshot again changes nothing.
  const newest = Number(await page.locator('.history-entry').first().getAttribute('data-version'));
  const again = entry.getByRole('button', { name: `Restore snapshot ${before}` });
  if ((await again.getAttribute('aria-expanded')) !== 'true') await again.click();
  await entry.getByRole('button', { name: 'Yes, restore' }).click();
  await page.getByText(/Nothing to restore/).waitFor();
  assert.equal(Number(await page.locator('.history-entry').first().getAttribute('data-version')), newest);
  await shot(page, 'flags-restored-phone');
  await page.close();
});

test('in production a change waits for a second release manager; a scheduled change applies on time', async () => {
  const production = await startSdk('production', 'user-7');
  try {
    portal.cli(['flags', 'set', '--project', 'studybuddy', '--environment', 'staging', 'smart-reminders', 'on']);
    const page = await browser.context.newPage();
    await page.setViewportSize(PHONE);
    await signIn(page, portal, 'rhea', '/projects/studybuddy/flags/production');
    await hydrated(page);
    await page.getByText(/Changes in production wait for another person's approval/).waitFor();
    const card = page.locator('[data-flag="smart-reminders"]');
    await card.getByRole('switch', { name: 'smart-reminders: turn on' }).click();
    await page.getByText("Asked for: the change waits for another person's approval.").waitFor();
    await assertFitsPhone(page, 'the flags page with a waiting change');
    const waiting = page.locator('.waiting-change').first();
    await waiting.getByText('smart-reminders on').waitFor();
    await card.getByText('Off for everyone').waitFor();
    // Rhea asked, so she is not offered Approve; the change says whom it waits for.
    await waiting.getByText('approvals 0 of 1, waiting for rob').waitFor();
    assert.equal(await waiting.getByRole('button', { name: 'Approve' }).count(), 0);
    assert.equal(await waiting.getByRole('button', { name: 'Cancel' }).count(), 1);
    await shot(page, 'flags-waiting-phone');
    // The SDK fetches the flags as they are now that the change is stored, waiting.
    await production.updateToggles();
    assert.equal(production.isEnabled('smart-reminders'), false, 'nothing changed before the approval');
    await page.close();

    const other = await browser.context.newPage();
    await signIn(other, portal, 'rob', '/projects/studybuddy/flags/production');
    await hydrated(other);
    const approved = Date.now();
    await other.locator('.waiting-change').first().getByRole('button', { name: 'Approve' }).click();
    await other.locator('[data-flag="smart-reminders"]').getByText('On for everyone').waitFor();
    await until(() => production.isEnabled('smart-reminders'), 'the SDK to see the approved change');
    console.log(`the SDK saw the approved change ${Date.now() - approved} ms after the approval`);
    await other.close();

    // A developer in staging schedules the flag off a few seconds from now.
    const dev = await browser.context.newPage();
    await signIn(dev, portal, 'dana', '/projects/studybuddy/flags/staging');
    await hydrated(dev);
    const staging = dev.locator('[data-flag="smart-reminders"]');
    await staging.getByRole('button', { name: 'Change rollout, strategies or variants' }).click();
    const at = new Date(Date.now() + 4000).toISOString().slice(0, 19);
    await staging.locator('.schedule-form select').selectOption('false');
    await staging.locator('.schedule-form input[name="apply_at"]').fill(at);
    await staging.locator('.schedule-form').getByRole('button', { name: 'Schedule' }).click();
    await dev.getByText(/Scheduled for/).waitFor();
    await dev.locator('.waiting-change').getByText('smart-reminders off').waitFor();
    await until(() => !sdk.isEnabled('smart-reminders'), 'the SDK to see the scheduled change', 12_000);
    await staging.getByText('Off for everyone').waitFor();
    await dev.close();
  } finally {
    production.stop();
  }
});

/** No sideways scrolling: at phone width the harness's full check, on a desktop the page's width. */
async function fits(page, label, what) {
  if (label === 'phone') return assertFitsPhone(page, what);
  const { scrollWidth, innerWidth } = await page.evaluate(() => ({ scrollWidth: document.documentElement.scrollWidth, innerWidth }));
  assert.ok(scrollWidth <= innerWidth, `${what} scrolls sideways on a desktop (${scrollWidth} > ${innerWidth})`);
}

test('a lone admin is not offered Approve on her own change, is told why it waits, and overrides with a reason', async () => {
  // A portal whose only person is an admin: production's changes need another release manager.
  const lone = await startPortal({ ann: 'admin' });
  const lonely = await launchBrowser();
  try {
    for (const [label, viewport] of [['desktop', DESKTOP], ['phone', PHONE]]) {
      const page = await lonely.context.newPage();
      await page.setViewportSize(viewport);
      await signIn(page, lone, 'ann', '/projects/studybuddy/flags/production');
      await hydrated(page);
      const flag = `dark-mode-${label}`;
      await page.getByText('Create a flag').click();
      await page.getByLabel('Flag name').fill(flag);
      await page.getByRole('button', { name: 'Create flag' }).click();
      const card = page.locator(`[data-flag="${flag}"]`);
      await card.getByRole('switch', { name: `${flag}: turn on` }).click();
      await page.getByText("Asked for: the change waits for another person's approval.").waitFor();

      const waiting = page.locator('.waiting-change', { hasText: `${flag} on` });
      await waiting.getByText('approvals 0 of 1').waitFor();
      await waiting.getByText('No other release manager or admin exists: add one under People, or an admin may override with a reason.').waitFor();
      assert.equal(await waiting.getByRole('button', { name: 'Approve' }).count(), 0, 'not offered what would be refused');
      await card.getByText('Off for everyone').waitFor();

      await waiting.getByRole('button', { name: 'Override with reason' }).click();
      const reason = `the ${label} release cannot wait: nobody else holds the role yet`;
      await waiting.getByLabel(/Why can this change not wait for its approvals/).fill(reason);
      await fits(page, label, 'the flags page with the override form open');
      await shot(page, `flags-override-form-${label}`);
      await waiting.getByRole('button', { name: 'Override and apply' }).click();
      await card.getByText('On for everyone').waitFor();
      await page.getByText('Overridden and applied.', { exact: false }).waitFor();
      await waiting.waitFor({ state: 'detached' });
      assert.equal(await page.getByText('Asked for:').count(), 0, 'the notice of the request is gone');

      const entry = page.locator('.history-entry').first();
      await entry.getByText('Approvals overridden by ann').waitFor();
      await entry.getByText(reason).waitFor();
      assert.equal(await entry.getAttribute('class'), 'history-entry overridden');
      const red = await entry.evaluate((element) => getComputedStyle(element).borderLeftColor);
      assert.equal(red, 'rgb(185, 28, 28)', 'the override is shown in red');
      await fits(page, label, 'the flags page with an overridden change in its history');
      await shot(page, `flags-overridden-${label}`);
      await page.close();
    }
  } finally {
    await lonely.close();
    await lone.stop();
  }
});
