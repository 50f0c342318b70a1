// Signing in and out, the first-admin setup link, people and tokens, and the audit log.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startPortal, launchBrowser, signIn, hydrated, shot, assertFitsPhone, PASSWORD, PHONE, DESKTOP } from '../lib/harness.mjs';

let portal;
let browser;

before(async () => {
  portal = await startPortal({ ada: 'admin' });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await portal?.stop();
});

test('a wrong password is refused with a clear message', async () => {
  const page = await browser.context.newPage();
  await page.goto(`${portal.url}/login`);
  await hydrated(page);
  await page.getByLabel('Username').fill('ada');
  await page.getByLabel('Password').fill('not my password');
  await page.getByRole('button', { name: 'Sign in' }).click();
  const alert = page.getByRole('alert');
  await alert.waitFor();
  assert.match(await alert.innerText(), /Could not sign in\. The username or the password is wrong\./);
  assert.match(page.url(), /\/login/);
  await shot(page, 'login-refused');
  await page.close();
});

test('an admin adds a person and a token, and both show in the audit log', async () => {
  const page = await browser.context.newPage();
  await signIn(page, portal, 'ada', '/admin');
  await hydrated(page);
  await page.getByText('Add a person').click();
  const form = page.locator('.add-form').first();
  await form.getByLabel('Username').fill('quinn');
  await form.getByLabel('Name', { exact: true }).fill('Quinn QA');
  await form.getByLabel('Role').selectOption('qa');
  await form.getByLabel('First password').fill(PASSWORD);
  await form.getByRole('button', { name: 'Add' }).click();
  await page.locator('tr[data-user="quinn"]').waitFor();

  await page.getByText('Create a token').click();
  const tokenForm = page.locator('.add-form').nth(1);
  await tokenForm.getByLabel('Name', { exact: true }).fill('github-actions');
  await tokenForm.getByLabel(/definition:write/).check();
  await tokenForm.getByRole('button', { name: 'Create token' }).click();
  const secret = await page.locator('pre.secret code').innerText();
  assert.match(secret, /^fdt_[A-Za-z0-9_-]{43}$/);
  await page.locator('tr[data-token="github-actions"]').waitFor();
  // Each scope's checkbox sits right beside its name.
  await page.getByText('Create a token').click();
  const box = await tokenForm.getByLabel(/runs:write/).boundingBox();
  const name = await tokenForm.locator('label.check', { hasText: 'runs:write' }).locator('code').boundingBox();
  assert.ok(name.x - (box.x + box.width) < 24, `the checkbox is beside its label (gap ${name.x - (box.x + box.width)} px)`);
  await shot(page, 'admin-desktop');
  const quinn = page.locator('tr[data-user="quinn"]');
  await quinn.getByRole('combobox').selectOption('developer');
  await quinn.getByRole('button', { name: 'Change' }).click();
  await assertFitsPhone(page, 'people and tokens');
  await shot(page, 'admin-phone');
  await page.setViewportSize(DESKTOP);

  await page.goto(`${portal.url}/audit?action=user.`);
  await hydrated(page);
  await page.locator('table.audit').getByText('user.created').first().waitFor();
  assert.match(await page.locator('table.audit tbody').innerText(), /quinn/);
  // A change reads as before → after, the JSON one click away.
  const roleChange = page.locator('table.audit tr', { hasText: 'user.role_changed' }).first();
  await roleChange.waitFor();
  assert.equal((await roleChange.locator('.audit-changes li').innerText()).trim(), 'value: qa → developer');
  assert.equal(await roleChange.locator('.audit-json pre').isVisible(), false, 'the JSON waits to be asked for');
  await roleChange.locator('.audit-json summary').click();
  assert.match(await roleChange.locator('.audit-json pre').innerText(), /"before": "qa"/);
  await page.goto(`${portal.url}/audit?security=on`);
  await page.locator('table.audit').getByText('token.created').waitFor();
  await shot(page, 'audit-desktop');
  await assertFitsPhone(page, 'the audit log');
  const what = await page.locator('table.audit tbody tr').first().locator('td[data-label="What"]').boundingBox();
  assert.ok(what && what.width > 0, 'the What column shows on a phone');
  const rowHeights = await page.$$eval('table.audit tbody tr', (rows) => rows.map((r) => r.getBoundingClientRect().height));
  assert.ok(Math.max(...rowHeights) < 500, `no entry grows into a wall (tallest ${Math.max(...rowHeights)} px)`);
  await shot(page, 'audit-phone');
  await page.close();
});

test('signing out ends the session', async () => {
  const page = await browser.context.newPage();
  await signIn(page, portal, 'ada');
  await hydrated(page);
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.waitForURL(/\/login/);
  await page.goto(portal.url);
  assert.match(page.url(), /\/login\?next=/);
  await page.close();
});

test('the first admin is created through the one-time setup link', async () => {
  const fresh = await startPortal({});
  try {
    const page = await browser.context.newPage({ viewport: PHONE });
    const link = await setupLink(fresh);
    await page.goto(link);
    await hydrated(page);
    await page.getByLabel('Username').fill('first');
    await page.getByLabel('Your name').fill('First Admin');
    await page.getByLabel('Password (at least 10 characters)').fill(PASSWORD);
    await page.getByLabel('Password again').fill(PASSWORD);
    await assertFitsPhone(page, 'the setup page');
    await shot(page, 'setup-phone');
    await page.getByRole('button', { name: 'Create admin' }).click();
    await page.waitForURL(/\/login\?created=1/);
    await page.getByText('Your admin account is ready').waitFor();
    await signIn(page, fresh, 'first');
    await page.getByText('First Admin').waitFor({ state: 'attached' });
    await page.goto(link);
    await hydrated(page);
    await page.getByLabel('Username').fill('second');
    await page.getByLabel('Password (at least 10 characters)').fill(PASSWORD);
    await page.getByLabel('Password again').fill(PASSWORD);
    await page.getByRole('button', { name: 'Create admin' }).click();
    await page.getByRole('alert').getByText(/invalid, used or expired/).waitFor();
    await page.close();
  } finally {
    await fresh.stop();
  }
});

/** The setup link the server printed at its first start. */
async function setupLink(portal) {
  for (let i = 0; i < 50 && !portal.setupLink; i++) await new Promise((r) => setTimeout(r, 100));
  assert.ok(portal.setupLink, 'the server printed a setup link');
  return portal.setupLink;
}
