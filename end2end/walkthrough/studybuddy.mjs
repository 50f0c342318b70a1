// The whole path to production on the README's portal, played by people in a real browser:
// StudyBuddy releases go from a push through CI to development and staging, QA ticks the
// manual checklist and approves on a desktop, a product manager accepts from the inbox on a
// tablet, a release manager deploys to production (another approves; outside the Sunday window
// she overrides it), and the monitoring check that has no data yet is passed by hand with a
// reason. Then a second release (a new table, with its down script) goes the same way, people
// write data in production, and whoever is on call rolls production back from a phone:
// confirm sheet, live steps, the site, flags and schema of release 1 back, and the rows written
// in between in a safety dump they download and open.
//
// Not a test: `bash .ci/walkthrough` starts the README's portal (`bash .ci/portal`) on a fresh
// data directory and runs this; it prints what happens, each stage's time, and leaves
// screenshots in end2end/screenshots/walkthrough-*.png. Environment: FLIGHTDECK_BIN, WALK_URL,
// WALK_DATA_DIR, WALK_REPO (StudyBuddy's git repository the portal made).

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cli, launchBrowser, signIn, hydrated, shot, assertFitsPhone, PHONE, DESKTOP } from '../lib/harness.mjs';

const TABLET = { width: 768, height: 1024 };
const portal = { url: process.env.WALK_URL, dataDir: process.env.WALK_DATA_DIR };
const origin = process.env.WALK_REPO;
assert.ok(portal.url && portal.dataDir && origin, 'WALK_URL, WALK_DATA_DIR and WALK_REPO must be set');
const started = Date.now();

function say(what) {
  const at = ((Date.now() - started) / 1000).toFixed(0).padStart(5);
  console.log(`[${at} s] ${what}`);
}

function sql(statement, database = 'flightdeck') {
  return execFileSync('psql', ['-h', join(portal.dataDir, 'postgres', 'run'), '-U', 'flightdeck', '-d', database,
    '-v', 'ON_ERROR_STOP=1', '-At', '-c', statement], { encoding: 'utf8' }).trim();
}

async function until(what, check, timeoutMinutes = 20) {
  const deadline = Date.now() + timeoutMinutes * 60_000;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}

/** Waits for a stage of deployment `number` to reach `state`, failing loudly if it ends otherwise. */
async function stageReaches(number, stage, state) {
  await until(`deployment #${number}'s ${stage} is ${state}`, () => {
    const [now, reason] = sql(`select s.state, coalesce(s.reason, '') from deployment_stage s join deployment d using (deployment_id)
      where d.number = ${number} and s.name = '${stage}'`).split('|');
    if (now !== state && ['failed', 'canceled', 'skipped', 'succeeded'].includes(now)) {
      throw new Error(`deployment #${number}'s ${stage} ended ${now} (${reason}) instead of ${state}`);
    }
    return now === state;
  });
}

async function deploymentSucceeds(number) {
  await until(`deployment #${number} succeeded`, () => {
    const [state, reason] = sql(`select state, coalesce(reason, '') from deployment where number = ${number}`).split('|');
    if (state === 'failed' || state === 'canceled') throw new Error(`deployment #${number} ${state}: ${reason}`);
    return state === 'succeeded';
  });
}

function newestDeployment(environment) {
  return Number(sql(`select coalesce(max(d.number), 0) from deployment d join environment e using (environment_id) where e.name = '${environment}'`));
}

// --- The people -------------------------------------------------------------------------------
const people = { dana: 'developer', quinn: 'qa', pam: 'product', rita: 'release-manager', rob: 'release-manager' };
for (const [name, role] of Object.entries(people)) {
  cli(portal.dataDir, ['user', 'add', name, '--role', role, '--name', name[0].toUpperCase() + name.slice(1), '--password-stdin'],
    'correct horse battery staple');
}
say(`people: ${Object.entries(people).map(([n, r]) => `${n} (${r})`).join(', ')}`);

const browser = await launchBrowser();
const work = mkdtempSync(join(tmpdir(), 'flightdeck-walkthrough-clone-'));
execFileSync('git', ['clone', '-q', origin, join(work, 'studybuddy')]);
const clone = join(work, 'studybuddy');
const git = (...args) => execFileSync('git', ['-C', clone, ...args], { encoding: 'utf8' });

/** Dana pushes a change; the hook starts a run; its release goes to development by itself. */
async function push(message, change) {
  const before = Number(sql('select count(*) from release'));
  change();
  git('add', '-A');
  git('-c', 'user.name=Dana Developer', '-c', 'user.email=dana@example.com', 'commit', '-q', '-m', message);
  git('push', '-q', 'origin', 'main');
  say(`dana pushed "${message}"; the run starts`);
  const version = await until('the run made its release', () => {
    const [number, state] = sql('select number, state from run order by number desc limit 1').split('|');
    if (state === 'failed' || state === 'canceled') throw new Error(`run #${number} ${state}; see ${portal.url}/projects/studybuddy/runs/${number}`);
    return Number(sql('select count(*) from release')) > before && sql('select version from release order by created_at desc limit 1');
  }, 30);
  say(`the run is green: release ${version}`);
  await until(`${version} runs in development`, () => sql(`select current_release from environment where name = 'development'`) === version, 20);
  say(`${version} runs in development`);
  return version;
}

/** Rita promotes `version` from its release page; returns the deployment's number. */
async function promote(version, environment) {
  const page = await browser.context.newPage();
  await signIn(page, portal, 'rita', `/projects/studybuddy/releases/${version}`);
  await hydrated(page);
  await page.getByRole('button', { name: `Promote to ${environment}` }).click();
  await page.waitForURL(/\/projects\/studybuddy\/deployments\/\d+$/);
  const number = Number(page.url().split('/').pop());
  say(`rita promoted ${version} to ${environment}: deployment #${number}`);
  await page.close();
  return number;
}

/** Staging: the machines deploy and test; QA ticks the checklist and approves; a product
 * manager accepts from the inbox on a tablet; the load test runs. */
async function throughStaging(version, { screenshots }) {
  const number = await promote(version, 'staging');
  await stageReaches(number, 'manual-testing', 'waiting');
  say('deploy-staging and the UI tests passed; manual testing waits for QA');

  const qa = await browser.context.newPage();
  await signIn(qa, portal, 'quinn', `/projects/studybuddy/deployments/${number}`);
  await hydrated(qa);
  const manual = qa.locator('[data-stage="manual-testing"]');
  const items = manual.locator('.checklist-item');
  await items.first().waitFor({ timeout: 60_000 });
  const count = await items.count();
  assert.ok(count > 0, 'the checklist has items');
  for (let i = 0; i < count; i += 1) {
    const box = items.nth(i).locator('input[type=checkbox]');
    await box.check();
    await items.nth(i).locator('.ticked-by').waitFor();
  }
  say(`quinn ticked all ${count} manual tests`);
  const gate = qa.locator('[data-stage="qa-approval"]');
  await gate.locator('.state-waiting').waitFor({ timeout: 60_000 });
  if (screenshots) await shot(qa, 'walkthrough-qa-desktop');
  await gate.locator('[data-decision="approve"] button').click();
  await gate.locator('.state-succeeded').waitFor({ timeout: 60_000 });
  say('quinn approved at the QA gate');
  await qa.close();

  const pm = await browser.context.newPage();
  await pm.setViewportSize(TABLET);
  await signIn(pm, portal, 'pam', '/inbox');
  await hydrated(pm);
  const card = pm.locator('.inbox-item', { hasText: version });
  await card.waitFor({ timeout: 60_000 });
  await card.locator('.qa-verdict', { hasText: 'quinn approved' }).waitFor();
  if (screenshots) await shot(pm, 'walkthrough-inbox-tablet');
  // She tries it on staging first: the page plans a session against staging's own API.
  const trial = await browser.context.newPage();
  await trial.goto(new URL(await card.getByRole('link', { name: 'Try it on staging' }).getAttribute('href'), portal.url).href);
  await trial.fill('input[name=subject]', `Acceptance ${version}`);
  await trial.fill('input[name=topic]', 'Tried by Pam');
  await trial.click('#plan-form button[type=submit]');
  await trial.locator('#planned li', { hasText: `Acceptance ${version}` }).waitFor({ timeout: 30_000 });
  await trial.close();
  assert.equal(sql(`select count(*) from study_session where subject = 'Acceptance ${version}'`, 'studybuddy_staging'), '1');
  assert.equal(sql(`select count(*) from study_session where subject = 'Acceptance ${version}'`, 'studybuddy_development'), '0');
  say('pam planned a session on staging: it is in staging\'s database, not development\'s');
  await card.getByLabel('Comment (optional)').fill('Planning feels right on the tablet');
  await card.getByRole('button', { name: 'Accept' }).click();
  await card.waitFor({ state: 'detached', timeout: 60_000 });
  say('pam accepted it from the inbox');
  await pm.close();

  await deploymentSucceeds(number);
  say(`staging runs ${version}: the load test passed`);
  return number;
}

/** Production: rita asks, rob approves, rita overrides a closed window, the check with no
 * data yet is passed by hand with a reason, and the rest runs. */
async function toProduction(version, { screenshots }) {
  const number = await promote(version, 'production');
  const rob = await browser.context.newPage();
  await signIn(rob, portal, 'rob', `/projects/studybuddy/deployments/${number}`);
  await hydrated(rob);
  await rob.locator('[data-stage="deploy-production"] [data-decision="approve"] button').click({ timeout: 60_000 });
  say('rob approved the production deploy');
  await rob.close();

  const rita = await browser.context.newPage();
  await signIn(rita, portal, 'rita', `/projects/studybuddy/deployments/${number}`);
  await hydrated(rita);
  const deploy = rita.locator('[data-stage="deploy-production"]');
  const override = deploy.getByRole('button', { name: 'Override the window' });
  // Inside the Sunday window there is nothing to override.
  const closed = await override.waitFor({ timeout: 30_000 }).then(() => true, () => false);
  if (closed) {
    if (screenshots) await shot(rita, 'walkthrough-production-window-desktop');
    await deploy.getByPlaceholder('Why deploy now? (required)').fill('Walkthrough: the release is accepted and on-call is here');
    await override.click();
    say('outside the Sunday window: rita overrode it with a reason');
  }
  await stageReaches(number, 'monitoring', 'waiting');
  const monitoring = rita.locator('[data-stage="monitoring"]');
  await monitoring.getByText(/inconclusive/).waitFor({ timeout: 60_000 });
  await monitoring.getByPlaceholder('Why is it fine? (required)').fill('No users on this machine yet; watched the logs by hand');
  await monitoring.getByRole('button', { name: 'Pass' }).click();
  say('monitoring had no sessions yet ("inconclusive"): rita passed it by hand with a reason');
  const analytics = rita.locator('[data-stage="analytics"]');
  await stageReaches(number, 'analytics', 'waiting');
  await analytics.getByPlaceholder('Why is it fine? (required)').fill('Analytics events arrive with [Health]; checked by hand');
  await analytics.getByRole('button', { name: 'Pass' }).click();
  say('analytics likewise');
  await deploymentSucceeds(number);
  if (screenshots) await shot(rita, 'walkthrough-production-desktop');
  say(`production runs ${version}`);
  await rita.close();
  return number;
}

function stageTimes(number) {
  return sql(`select s.name, s.kind, round(extract(epoch from s.finished_at - s.started_at)::numeric, 1)
    from deployment_stage s join deployment d using (deployment_id) where d.number = ${number} order by s.position`)
    .split('\n').map((line) => line.split('|'));
}

// --- Release 1 ---------------------------------------------------------------------------------
const v1 = await push('Plan sessions a week ahead', () => {
  const readme = join(clone, 'README.md');
  writeFileSync(readme, `${readFileSync(readme, 'utf8')}\nPlan sessions a week ahead.\n`);
});
const staging1 = await throughStaging(v1, { screenshots: true });
const production1 = await toProduction(v1, { screenshots: true });

// --- Release 2: a new table, with its down script ------------------------------------------------
const v2 = await push('Weekly goals', () => {
  const dir = join(clone, 'db', 'migrations');
  writeFileSync(join(dir, '0004_create_study_goal.sql'),
    '-- Weekly goals: what a student means to get done this week.\n\n'
    + 'create table study_goal (\n    id bigint generated always as identity primary key,\n'
    + '    title text not null check (length(title) between 1 and 200),\n'
    + '    week_of date not null\n);\n');
  writeFileSync(join(dir, '0004_create_study_goal.down.sql'), '-- Undoes 0004.\n\ndrop table study_goal;\n');
});
await throughStaging(v2, { screenshots: false });
const production2 = await toProduction(v2, { screenshots: false });
assert.equal(sql(`select to_regclass('public.study_goal') is not null`, 'studybuddy_production'), 't');

// People use production on release 2: goals in the new table, a session through the web app.
sql(`insert into study_goal (title, week_of) values ('Finish the biology chapter', current_date), ('Two mock exams', current_date)`,
  'studybuddy_production');
const user = await browser.context.newPage();
await user.goto(`${portal.url}/env/production/`);
await user.fill('input[name=subject]', 'Chemistry');
await user.fill('input[name=topic]', 'Planned on release 2');
await user.click('#plan-form button[type=submit]');
await user.locator('#planned li', { hasText: 'Chemistry' }).waitFor({ timeout: 30_000 });
await user.close();
say('people wrote to production on release 2: two weekly goals and a study session');
// On release 2 someone switches streaks off in production (they look odd next to the goals).
cli(portal.dataDir, ['flags', 'set', '--project', 'studybuddy', '--environment', 'production', 'study-streaks', 'off']);
const widened = sql(`select max(version) from flag_snapshot s join environment e using (environment_id) where e.name = 'production'`);
say(`study-streaks switched off in production (flag snapshot ${widened})`);
const siteOf = async () => (await fetch(`${portal.url}/env/production/`)).text();
const flagsOf = (version) => sql(`select sha256 from flag_snapshot s join environment e using (environment_id)
  where e.name = 'production' and s.version = ${version}`);

// --- On call, on a phone: roll production back -----------------------------------------------------
const phone = await browser.context.newPage();
await phone.setViewportSize(PHONE);
await signIn(phone, portal, 'rita', '/projects/studybuddy/environments/production');
// How soon Roll back works on the phone (loopback): the form posts once the HTML is parsed (no
// script needed); the page is fully live once the wasm has hydrated. Cold: an empty cache.
const cdp = await phone.context().newCDPSession(phone);
const readings = [];
for (const cache of ['cold', 'warm', 'warm', 'warm', 'warm']) {
  if (cache === 'cold') await cdp.send('Network.clearBrowserCache');
  await phone.goto(`${portal.url}/projects/studybuddy/environments/production`);
  const hydratedAt = await phone.evaluate(() => new Promise((resolve) => {
    const check = () => (window.__flightdeck_hydrated ? resolve(performance.now()) : setTimeout(check, 2));
    check();
  }));
  const usable = await phone.evaluate(() => performance.getEntriesByType('navigation')[0].domInteractive);
  readings.push({ cache, usable: Math.round(usable), hydrated: Math.round(hydratedAt) });
}
const tti = readings.map((r) => `${r.cache} ${r.usable}/${r.hydrated} ms`).join(', ');
say(`production's page on the phone, Roll back usable / hydrated after: ${tti}`);
await assertFitsPhone(phone, 'production on a phone');
await shot(phone, 'walkthrough-oncall-phone');
const sheet = phone.locator('.rollback-sheet');
await sheet.locator('summary').click();
await sheet.locator('.sheet-title', { hasText: `${v2} → ${v1}` }).waitFor();
await shot(phone, 'walkthrough-rollback-confirm-phone');
say(`the confirm sheet: ${(await sheet.locator('.sheet').innerText()).replace(/\s+/g, ' ').slice(0, 400)}`);
const tapped = Date.now();
await sheet.getByRole('button', { name: 'Confirm rollback' }).click();
await phone.waitForURL(/\/projects\/studybuddy\/deployments\/\d+$/);
const rollback = Number(phone.url().split('/').pop());
await phone.locator('h1 .state-succeeded').waitFor({ timeout: 20 * 60_000 });
say(`rollback #${rollback} succeeded ${((Date.now() - tapped) / 1000).toFixed(1)} s after the tap`);
await shot(phone, 'walkthrough-rollback-done-phone');
const steps = await phone.locator('[data-step]').evaluateAll((items) => items.map((i) => `${i.dataset.step}=${i.dataset.state}`));
assert.deepEqual(steps, ['flags=done', 'site=done', 'jobs=done', 'database=done']);

// Everything of release 1 is back.
assert.equal(sql(`select current_release from environment where name = 'production'`), v1);
const site = await siteOf();
assert.ok(site.includes('StudyBuddy'), 'production serves the web app');
const config = await (await fetch(`${portal.url}/env/production/config.json`)).json();
assert.equal(config.release, v1);
const v1Flags = sql(`select flag_snapshot_version from deployment where number = ${production1}`);
const nowFlags = sql(`select flag_snapshot_version from deployment where number = ${rollback}`);
assert.equal(flagsOf(nowFlags), flagsOf(v1Flags), 'the flags are release 1\'s');
assert.notEqual(flagsOf(nowFlags), flagsOf(widened), 'streaks are back on');
assert.equal(sql(`select to_regclass('public.study_goal') is null`, 'studybuddy_production'), 't');
assert.equal(sql(`select count(*) from study_session where subject = 'Chemistry'`, 'studybuddy_production'), '1');
say(`back on ${v1}: its site and config.json (release ${config.release}), its flags (snapshot ${v1Flags} = ${nowFlags} by content), `
  + 'its schema (study_goal gone by its down script), the session kept');

// The goals live on in the safety dump, one tap away.
const backup = phone.locator('.backup', { hasText: 'safety dump' });
await backup.scrollIntoViewIfNeeded();
await shot(phone, 'walkthrough-safety-dump-phone');
const [download] = await Promise.all([phone.waitForEvent('download'), backup.getByRole('link', { name: /^Download / }).click()]);
const file = await download.path();
const goals = execFileSync('pg_restore', ['--data-only', '--table=study_goal', '-f', '-', file], { encoding: 'utf8' });
assert.match(goals, /Finish the biology chapter/);
assert.match(goals, /Two mock exams/);
say(`rita downloaded ${download.suggestedFilename()}: pg_restore shows the two weekly goals written on release 2`);
await phone.close();

// --- What it took ---------------------------------------------------------------------------------
console.log(`\nPromotion of ${v1} to staging (deployment #${staging1}), each stage:`);
for (const [name, kind, seconds] of stageTimes(staging1)) console.log(`  ${name.padEnd(20)} ${kind.padEnd(7)} ${seconds.padStart(7)} s`);
console.log(`Production deployment #${production1}, each stage (people's pauses included):`);
for (const [name, kind, seconds] of stageTimes(production1)) console.log(`  ${name.padEnd(20)} ${kind.padEnd(7)} ${seconds.padStart(7)} s`);
console.log(`The environment page on a phone, Roll back usable (HTML parsed) / hydrated: ${tti}`);
console.log(`Rollback #${rollback} of production, each step:`);
for (const [name, seconds] of sql(`select st.name, round(extract(epoch from st.finished_at - st.started_at)::numeric, 2)
  from deployment_step st join deployment_stage s using (deployment_stage_id) join deployment d using (deployment_id)
  where d.number = ${rollback} order by st.position`).split('\n').map((line) => line.split('|'))) {
  console.log(`  ${name.padEnd(20)} ${seconds.padStart(7)} s`);
}
say(`the walkthrough is done: ${v1} and ${v2} went to production (deployments #${production1} and #${production2}), and rollback #${rollback} took production back to ${v1}`);
await browser.close();
rmSync(work, { recursive: true, force: true });
