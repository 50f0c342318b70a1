// Real, unmodified SDKs from npm against Flightdeck's flag APIs: the Unleash frontend SDK
// (unleash-proxy-client) on the Frontend API, the Unleash server SDK (unleash-client) on the
// client API, and OpenFeature's OFREP providers (server: one flag per call; web: all flags at
// once, with change detection over Server-Sent Events). They must agree with each other user by
// user, see a change within their refresh (the SSE one within a second), follow a snapshot
// restore, and bad requests must get clear refusals.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import http from 'node:http';
import { EventSource } from 'eventsource';
import { UnleashClient } from 'unleash-proxy-client';
import { Unleash, InMemStorageProvider } from 'unleash-client';
import { OpenFeature as WebFeatures, ProviderEvents } from '@openfeature/web-sdk';
import { OFREPWebProvider } from '@openfeature/ofrep-web-provider';
import { OpenFeature as ServerFeatures } from '@openfeature/server-sdk';
import { OFREPProvider } from '@openfeature/ofrep-provider';
import { startPortal } from '../lib/harness.mjs';

// Node 20 has no EventSource; a browser has one. This one records what it opens, so the test can
// tell the web provider really used the event stream.
const opened = [];
globalThis.EventSource = class extends EventSource {
  constructor(url, init) {
    super(url, init);
    opened.push(String(url));
  }
};

const STAGING = ['--project', 'studybuddy', '--environment', 'staging'];
const GENTLE = { tone: 'gentle', perDay: 1 };
const NUDGE = 'Time to study!';
/** ada and grace are named by beta-dashboard; 200 more users exercise the 50 % rollout. */
const USERS = ['ada', 'grace', ...Array.from({ length: 200 }, (_, i) => `user-${i}`)];

function smartReminders(rollout) {
  return {
    name: 'smart-reminders', type: 'experiment', enabled: true, impressionData: false,
    strategies: [{
      name: 'flexibleRollout', constraints: [],
      parameters: { rollout: String(rollout), stickiness: 'userId', groupId: 'smart-reminders' },
    }],
    variants: [
      { name: 'gentle', weight: 500, weightType: 'variable', stickiness: 'userId',
        payload: { type: 'json', value: JSON.stringify(GENTLE) } },
      { name: 'nudge', weight: 500, weightType: 'variable', stickiness: 'userId',
        payload: { type: 'string', value: NUDGE } },
    ],
  };
}

const FEATURES = {
  version: 2,
  features: [
    { name: 'study-streaks', type: 'release', enabled: true, impressionData: false,
      strategies: [{ name: 'default', parameters: {}, constraints: [] }], variants: [] },
    { name: 'dark-mode', type: 'release', enabled: false, impressionData: false,
      strategies: [{ name: 'default', parameters: {}, constraints: [] }], variants: [] },
    smartReminders(50),
    { name: 'beta-dashboard', type: 'release', enabled: true, impressionData: false,
      strategies: [{ name: 'userWithId', parameters: { userIds: 'ada,grace' }, constraints: [] }], variants: [] },
  ],
  segments: [],
};

let portal;
let files;
const tokens = {};
let frontend; // unleash-proxy-client for ada, refreshing every second
const frontendRequests = []; // what it asked and what it got
let server; // unleash-client, refreshing every second
const serverWarnings = [];
let serverUnchanged = 0; // 304s the server SDK got
let ofrepServer; // OpenFeature server client on the OFREP provider
let ofrepWeb; // OpenFeature web client on the OFREP web provider
const webChanges = [];
/** Per user, what the Frontend API (through unleash-proxy-client) answered. */
const frontendResults = new Map();

before(async () => {
  portal = await startPortal();
  files = mkdtempSync(join(tmpdir(), 'flightdeck-e2e-flags-'));
  const output = portal.cli(['flags', 'import', ...STAGING, writeJson('features.json', FEATURES)]);
  assert.match(output, /4 flags created/);
  const token = (environment, kind, name) => portal
    .cli(['flags', 'sdk-token', 'create', '--project', 'studybuddy', '--environment', environment, '--kind', kind, name])
    .trim().split('\n').pop();
  tokens.frontend = token('staging', 'frontend', 'sdk-test-web');
  tokens.client = token('staging', 'client', 'sdk-test-api');
  tokens.production = token('production', 'frontend', 'sdk-test-prod-web');
  assert.match(tokens.frontend, /^studybuddy:staging\.\S+$/);
  assert.match(tokens.production, /^studybuddy:production\.\S+$/);
});

after(async () => {
  frontend?.stop();
  server?.destroy();
  await WebFeatures.close();
  await ServerFeatures.close();
  await portal?.stop();
  if (files) rmSync(files, { recursive: true, force: true });
});

function writeJson(name, value) {
  const path = join(files, name);
  writeFileSync(path, JSON.stringify(value, null, 2));
  return path;
}

/** Waits until `check()` holds (it may be async), polling; returns the milliseconds it took. */
async function until(check, what, timeout = 5000) {
  const started = performance.now();
  while (!(await check())) {
    if (performance.now() - started > timeout) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return Math.round(performance.now() - started);
}

/**
 * Issues a `flightdeck` command and meanwhile waits until every watcher sees its effect; returns
 * the command's output and, per watcher, the milliseconds from issuing the command to seeing it.
 */
async function issueAndWatch(args, watchers) {
  const issued = performance.now();
  const command = portal.cliAsync(args).then((stdout) => ({ stdout, ms: Math.round(performance.now() - issued) }));
  command.catch(() => {}); // awaited below; this only keeps a failure from going unhandled meanwhile
  const seen = await Promise.all(Object.entries(watchers).map(async ([name, sees]) => {
    await until(sees, `${name} to see \`flightdeck ${args.join(' ')}\``, 10_000);
    return [name, Math.round(performance.now() - issued)];
  }));
  const { stdout, ms } = await command;
  return { stdout, cliMs: ms, seen };
}

const described = (seen) => seen.map(([name, ms]) => `${name} ${ms} ms`).join(', ');

/** An Unleash variant, as the comparison needs it. */
function variantOf(variant) {
  return { name: variant.name, enabled: variant.enabled, payload: variant.payload ?? null };
}

/** The newest snapshot's version, and how many `flags snapshots` lists. */
function latestSnapshot() {
  const rows = portal.cli(['flags', 'snapshots', ...STAGING]).trim().split('\n').slice(1);
  return { version: Number(rows[0].trim().split(/\s+/)[0]), count: rows.length };
}

const same = (a, b) => a.length === b.length && a.every((v, i) => v === b[i]);

/** study-streaks, dark-mode, beta-dashboard and smart-reminders for ada, as the frontend SDK holds them. */
function adaState(frontendSdk) {
  return ['study-streaks', 'dark-mode', 'beta-dashboard', 'smart-reminders'].map((name) => frontendSdk.isEnabled(name));
}

test('the Frontend API SDK (unleash-proxy-client) evaluates flags, variants and the 50 % rollout', async () => {
  frontend = new UnleashClient({
    url: `${portal.url}/api/frontend`,
    clientKey: tokens.frontend,
    appName: 'studybuddy-web',
    refreshInterval: 1,
    metricsInterval: 1,
    metricsIntervalInitial: 0,
    context: { userId: 'ada' },
    fetch: async (url, init) => {
      const response = await fetch(url, init);
      frontendRequests.push({ method: init?.method ?? 'GET', path: new URL(url).pathname, status: response.status });
      return response;
    },
  });
  const errors = [];
  frontend.on('error', (error) => errors.push(error));
  await frontend.start();
  assert.equal(frontend.isEnabled('study-streaks'), true);
  assert.equal(frontend.isEnabled('dark-mode'), false);
  assert.equal(frontend.isEnabled('beta-dashboard'), true, 'ada is named by beta-dashboard');
  assert.equal(frontend.isEnabled('no-such-flag'), false);
  assert.deepEqual(variantOf(frontend.getVariant('study-streaks')), { name: 'disabled', enabled: false, payload: null });

  // A second client walks through the users (this one does not refresh on a timer, so every
  // answer belongs to the context just set).
  const sweep = new UnleashClient({
    url: `${portal.url}/api/frontend`,
    clientKey: tokens.frontend,
    appName: 'studybuddy-web',
    disableRefresh: true,
    disableMetrics: true,
  });
  await sweep.start();
  for (const userId of USERS) {
    await sweep.updateContext({ userId });
    assert.equal(sweep.getContext().userId, userId);
    frontendResults.set(userId, {
      'study-streaks': sweep.isEnabled('study-streaks'),
      'dark-mode': sweep.isEnabled('dark-mode'),
      'beta-dashboard': sweep.isEnabled('beta-dashboard'),
      'smart-reminders': sweep.isEnabled('smart-reminders'),
      variant: variantOf(sweep.getVariant('smart-reminders')),
    });
  }
  sweep.stop();

  const results = [...frontendResults.values()];
  const rolledOut = results.filter((r) => r['smart-reminders']);
  console.log(`smart-reminders (50 %) is on for ${rolledOut.length} of ${results.length} users`);
  assert.ok(rolledOut.length > 0.35 * results.length && rolledOut.length < 0.65 * results.length,
    `about half the users get the rollout, not ${rolledOut.length} of ${results.length}`);
  assert.deepEqual(USERS.filter((u) => frontendResults.get(u)['beta-dashboard']), ['ada', 'grace']);
  assert.ok(results.every((r) => r['study-streaks'] && !r['dark-mode']));
  const gentle = rolledOut.filter((r) => r.variant.name === 'gentle');
  const nudge = rolledOut.filter((r) => r.variant.name === 'nudge');
  assert.equal(gentle.length + nudge.length, rolledOut.length, 'everyone in the rollout gets one of the two variants');
  assert.ok(gentle.length > 0 && nudge.length > 0, 'both variants are served');
  assert.deepEqual(gentle[0].variant, { name: 'gentle', enabled: true, payload: { type: 'json', value: JSON.stringify(GENTLE) } });
  assert.deepEqual(JSON.parse(gentle[0].variant.payload.value), GENTLE);
  assert.deepEqual(nudge[0].variant, { name: 'nudge', enabled: true, payload: { type: 'string', value: NUDGE } });
  assert.ok(results.filter((r) => !r['smart-reminders']).every((r) => r.variant.name === 'disabled' && !r.variant.enabled));

  // Its usage reports are accepted too.
  await until(() => frontendRequests.some((r) => r.path === '/api/frontend/client/metrics'), 'the SDK to send metrics');
  const metrics = frontendRequests.filter((r) => r.path === '/api/frontend/client/metrics');
  assert.ok(metrics.every((r) => r.status === 202), `metrics answered ${metrics.map((r) => r.status)}`);
  assert.ok(frontendRequests.filter((r) => r.path === '/api/frontend').every((r) => r.status === 200 || r.status === 304));
  assert.deepEqual(errors, []);
});

test('the server SDK (unleash-client) evaluates every user exactly as the Frontend API did', async () => {
  server = new Unleash({
    url: `${portal.url}/api`,
    appName: 'studybuddy-api',
    customHeaders: { Authorization: tokens.client },
    refreshInterval: 1000,
    metricsInterval: 1000,
    storageProvider: new InMemStorageProvider(),
  });
  const errors = [];
  server.on('error', (error) => errors.push(error));
  server.on('warn', (warning) => serverWarnings.push(warning));
  server.on('unchanged', () => { serverUnchanged += 1; });
  const registered = new Promise((resolve) => server.once('registered', resolve));
  await new Promise((resolve, reject) => {
    server.once('synchronized', resolve);
    server.once('error', reject);
  });

  const mismatches = [];
  for (const userId of USERS) {
    const context = { userId };
    const got = {
      'study-streaks': server.isEnabled('study-streaks', context),
      'dark-mode': server.isEnabled('dark-mode', context),
      'beta-dashboard': server.isEnabled('beta-dashboard', context),
      'smart-reminders': server.isEnabled('smart-reminders', context),
      variant: variantOf(server.getVariant('smart-reminders', context)),
    };
    const expected = frontendResults.get(userId);
    try {
      assert.deepEqual(got, expected);
    } catch {
      mismatches.push({ userId, frontendApi: expected, serverSdk: got });
    }
  }
  assert.deepEqual(mismatches, [], 'the server SDK buckets every user as the Frontend API does');

  // Registration and usage reports are accepted (the SDK warns on any other answer).
  await registered;
  await new Promise((resolve) => server.once('sent', resolve));
  assert.deepEqual(serverWarnings, []);
  assert.deepEqual(errors, []);
});

test('the OFREP server provider evaluates booleans, strings and objects with reasons and variants', async () => {
  await ServerFeatures.setProviderAndWait(new OFREPProvider({
    baseUrl: portal.url,
    headers: [['Authorization', `Bearer ${tokens.client}`]],
  }));
  ofrepServer = ServerFeatures.getClient('studybuddy-api');
  const gentleUser = USERS.find((u) => frontendResults.get(u).variant.name === 'gentle');
  const nudgeUser = USERS.find((u) => frontendResults.get(u).variant.name === 'nudge');
  const outUser = USERS.find((u) => !frontendResults.get(u)['smart-reminders']);
  const details = async (kind, flag, fallback, targetingKey) => {
    const { value, reason, variant, errorCode } = await ofrepServer[`get${kind}Details`](flag, fallback, { targetingKey });
    return { value, reason, variant, errorCode };
  };

  assert.deepEqual(await details('Boolean', 'study-streaks', false, 'ada'),
    { value: true, reason: 'STATIC', variant: 'on', errorCode: undefined });
  assert.deepEqual(await details('Boolean', 'dark-mode', true, 'ada'),
    { value: false, reason: 'DISABLED', variant: 'off', errorCode: undefined });
  assert.deepEqual(await details('Boolean', 'beta-dashboard', false, 'grace'),
    { value: true, reason: 'TARGETING_MATCH', variant: 'on', errorCode: undefined });
  assert.deepEqual(await details('Boolean', 'beta-dashboard', true, 'user-1'),
    { value: false, reason: 'TARGETING_MATCH', variant: 'off', errorCode: undefined });
  assert.deepEqual(await details('Object', 'smart-reminders', {}, gentleUser),
    { value: GENTLE, reason: 'SPLIT', variant: 'gentle', errorCode: undefined });
  assert.deepEqual(await details('String', 'smart-reminders', 'quiet', nudgeUser),
    { value: NUDGE, reason: 'SPLIT', variant: 'nudge', errorCode: undefined });
  assert.deepEqual(await details('Boolean', 'smart-reminders', true, outUser),
    { value: false, reason: 'SPLIT', variant: 'off', errorCode: undefined });
  const missing = await details('Boolean', 'no-such-flag', true, 'ada');
  assert.equal(missing.value, true, 'an unknown flag gives the code default');
  assert.equal(missing.errorCode, 'FLAG_NOT_FOUND');

  // One flag per call, for every user: the same buckets and variants again, each read with the
  // type its value has (the provider refuses a value of another type than the default's).
  const mismatches = [];
  for (const userId of USERS) {
    const expected = frontendResults.get(userId);
    const wanted = expected['smart-reminders'] ? expected.variant.name : 'off';
    const [kind, fallback, value] = { gentle: ['Object', {}, GENTLE], nudge: ['String', '', NUDGE], off: ['Boolean', true, false] }[wanted];
    const got = await details(kind, 'smart-reminders', fallback, userId);
    try {
      assert.deepEqual(got, { value, reason: 'SPLIT', variant: wanted, errorCode: undefined });
    } catch {
      mismatches.push({ userId, frontendApi: wanted, ofrep: got });
    }
  }
  assert.deepEqual(mismatches, [], 'OFREP buckets every user as the Frontend API does');
});

test('the OFREP web provider evaluates every flag at once and follows a change of context', async () => {
  const webUser = USERS.find((u) => frontendResults.get(u).variant.name === 'gentle');
  await WebFeatures.setContext({ targetingKey: 'ada' });
  await WebFeatures.setProviderAndWait(new OFREPWebProvider({
    baseUrl: portal.url,
    headers: [['X-API-Key', tokens.frontend]],
    cacheMode: 'disabled', // Node has no localStorage
  }));
  ofrepWeb = WebFeatures.getClient();
  ofrepWeb.addHandler(ProviderEvents.ConfigurationChanged, (event) => {
    webChanges.push({ at: performance.now(), flags: event?.flagsChanged ?? [] });
  });
  assert.equal(ofrepWeb.getBooleanValue('study-streaks', false), true);
  assert.equal(ofrepWeb.getBooleanValue('dark-mode', true), false);
  assert.equal(ofrepWeb.getBooleanValue('beta-dashboard', false), true);
  assert.equal(ofrepWeb.getBooleanDetails('study-streaks', false).reason, 'STATIC');

  await WebFeatures.setContext({ targetingKey: webUser });
  assert.equal(ofrepWeb.getBooleanValue('beta-dashboard', true), false);
  const reminders = ofrepWeb.getObjectDetails('smart-reminders', {});
  assert.deepEqual({ value: reminders.value, variant: reminders.variant, reason: reminders.reason },
    { value: GENTLE, variant: 'gentle', reason: 'SPLIT' });

  await until(() => opened.some((url) => url.startsWith(`${portal.url}/ofrep/v1/events?ticket=`)),
    'the web provider to open the event stream');
  assert.ok(opened.every((url) => !url.includes(tokens.frontend.split('.')[1])), 'the stream URL does not carry the token');
});

test('a flag change reaches every SDK, by the event stream and by polling (latency is the bench\'s to measure)', async () => {
  const watchers = {
    'ofrep-web-provider (SSE)': (on) => ofrepWeb.getBooleanValue('dark-mode', !on) === on,
    'ofrep-provider (per call)': async (on) => (await ofrepServer.getBooleanValue('dark-mode', !on, { targetingKey: 'ada' })) === on,
    'unleash-proxy-client (1 s poll)': (on) => frontend.isEnabled('dark-mode') === on,
    'unleash-client (1 s poll)': (on) => server.isEnabled('dark-mode', { userId: 'ada' }) === on,
  };
  const measured = [];
  for (const state of ['on', 'off']) {
    const on = state === 'on';
    for (const [name, sees] of Object.entries(watchers)) assert.equal(await sees(!on), true, `${name} starts with dark-mode ${on ? 'off' : 'on'}`);
    const changesBefore = webChanges.length;
    const { stdout, cliMs, seen } = await issueAndWatch(['flags', 'set', ...STAGING, 'dark-mode', state],
      Object.fromEntries(Object.entries(watchers).map(([name, sees]) => [name, () => sees(on)])));
    assert.match(stdout, new RegExp(`dark-mode is ${state} in staging \\(snapshot \\d+\\)`));
    assert.ok(webChanges.length > changesBefore, 'the web provider announced the change');
    assert.ok(webChanges.at(-1).flags.includes('dark-mode'));
    // Every SDK saw it (issueAndWatch waits with a generous deadline); how fast is for the
    // bench, not for a test sharing two cores with everything else.
    console.log(`dark-mode ${state}, seen after issuing the change by: ${described(seen)} (the CLI itself took ${cliMs} ms)`);
    measured.push(...seen);
  }
  assert.equal(measured.length, Object.keys(watchers).length * 2, 'every SDK saw both changes');
  // Between changes the pollers were told "not modified" (their ETags matched).
  assert.ok(frontendRequests.some((r) => r.path === '/api/frontend' && r.status === 304), 'unleash-proxy-client got a 304');
  assert.ok(serverUnchanged > 0, 'unleash-client got a 304');
  assert.deepEqual(serverWarnings, []);
});

test('restoring a snapshot puts every SDK back; restoring it again changes nothing', async () => {
  const before = latestSnapshot();
  const ada = frontendResults.get('ada');
  const original = [true, false, true, ada['smart-reminders']];

  // Several changes: three switches and a wider rollout.
  await portal.cliAsync(['flags', 'set', ...STAGING, 'dark-mode', 'on']);
  await portal.cliAsync(['flags', 'set', ...STAGING, 'study-streaks', 'off']);
  await portal.cliAsync(['flags', 'set', ...STAGING, 'beta-dashboard', 'off']);
  const widened = writeJson('wider.json', { version: 2, features: [smartReminders(100)], segments: [] });
  assert.match(await portal.cliAsync(['flags', 'import', ...STAGING, widened]), /0 flags created, 1 changes/);
  const changed = [false, true, false, true];
  await until(() => same(adaState(frontend), changed), 'unleash-proxy-client to see the changes');
  await until(() => USERS.every((userId) => server.isEnabled('smart-reminders', { userId })), 'unleash-client to see the 100 % rollout');
  await until(() => ofrepWeb.getBooleanValue('study-streaks', true) === false, 'the web provider to see study-streaks off');
  assert.equal(latestSnapshot().version, before.version + 4);

  // Back to where we were, in one step.
  const { stdout: restored, cliMs, seen } = await issueAndWatch(['flags', 'restore', ...STAGING, String(before.version)], {
    'unleash-proxy-client': () => same(adaState(frontend), original),
    'unleash-client': () => USERS.every((userId) => {
      const expected = frontendResults.get(userId);
      const context = { userId };
      return server.isEnabled('smart-reminders', context) === expected['smart-reminders']
        && server.isEnabled('study-streaks', context) && !server.isEnabled('dark-mode', context)
        && server.isEnabled('beta-dashboard', context) === expected['beta-dashboard']
        && server.getVariant('smart-reminders', context).name === expected.variant.name;
    }),
    'ofrep-web-provider': () => ofrepWeb.getBooleanValue('study-streaks', false) === true
      && ofrepWeb.getBooleanValue('dark-mode', true) === false,
    'ofrep-provider': async () => (await ofrepServer.getBooleanValue('study-streaks', false, { targetingKey: 'grace' }))
      && !(await ofrepServer.getBooleanValue('dark-mode', true, { targetingKey: 'grace' })),
  });
  console.log(`restore, seen after issuing it by: ${described(seen)} (the CLI itself took ${cliMs} ms)`);
  assert.match(restored, new RegExp(`^Restored snapshot ${before.version} as snapshot ${before.version + 5}:`));
  for (const change of ['dark-mode: on → off', 'study-streaks: off → on', 'beta-dashboard: off → on']) {
    assert.ok(restored.includes(change), `the restore lists "${change}":\n${restored}`);
  }
  assert.deepEqual(adaState(frontend), original);
  assert.deepEqual(variantOf(frontend.getVariant('smart-reminders')), ada.variant);
  assert.deepEqual(await ofrepServer.getBooleanValue('beta-dashboard', false, { targetingKey: 'grace' }), true);
  assert.deepEqual(await ofrepServer.getBooleanValue('study-streaks', false, { targetingKey: 'grace' }), true);
  assert.deepEqual(await ofrepServer.getBooleanValue('dark-mode', true, { targetingKey: 'grace' }), false);
  const out = USERS.find((u) => !frontendResults.get(u)['smart-reminders']);
  assert.equal(await ofrepServer.getBooleanValue('smart-reminders', true, { targetingKey: out }), false, 'the 50 % rollout is back');
  const afterRestore = latestSnapshot();
  assert.equal(afterRestore.version, before.version + 5, 'the restore is one change');

  const again = await portal.cliAsync(['flags', 'restore', ...STAGING, String(before.version)]);
  assert.match(again, new RegExp(`staging already has the flags of snapshot ${before.version}\\.`));
  assert.deepEqual(latestSnapshot(), afterRestore, 'restoring again adds no snapshot');
});

test('bad requests get clear refusals', async () => {
  const frontendApi = `${portal.url}/api/frontend`;
  const ofrep = `${portal.url}/ofrep/v1/evaluate/flags`;
  const json = { 'Content-Type': 'application/json' };
  const unknown = 'studybuddy:staging.not-a-real-secret';

  // Unknown token: 401 on every API.
  for (const [url, init] of [
    [`${frontendApi}?userId=ada`, { headers: { Authorization: unknown } }],
    [`${portal.url}/api/client/features`, { headers: { Authorization: unknown } }],
    [ofrep, { method: 'POST', headers: { ...json, Authorization: `Bearer ${unknown}` }, body: '{}' }],
    [`${ofrep}/dark-mode`, { method: 'POST', headers: { ...json, 'X-API-Key': unknown }, body: '{}' }],
    [`${frontendApi}?userId=ada`, {}],
  ]) {
    const response = await fetch(url, init);
    assert.equal(response.status, 401, `${init.method ?? 'GET'} ${url}`);
  }

  // A production token asking for staging: 403, saying why.
  let response = await fetch(`${frontendApi}?userId=ada&environment=staging`, { headers: { Authorization: tokens.production } });
  assert.equal(response.status, 403);
  assert.match((await response.json()).error.message, /studybuddy\/production.*staging/);
  response = await fetch(ofrep, { method: 'POST', headers: { ...json, Authorization: tokens.production },
    body: JSON.stringify({ context: { targetingKey: 'ada', environment: 'staging' } }) });
  assert.equal(response.status, 403);
  // A token of the wrong kind for the API: 403.
  response = await fetch(`${portal.url}/api/client/features`, { headers: { Authorization: tokens.frontend } });
  assert.equal(response.status, 403);
  assert.match((await response.json()).error.message, /frontend token/);

  // Malformed contexts: 400 with a message naming the problem.
  response = await fetch(frontendApi, { method: 'POST', headers: { ...json, Authorization: tokens.frontend },
    body: JSON.stringify({ context: { userId: { id: 1 } } }) });
  assert.equal(response.status, 400);
  assert.match((await response.json()).error.message, /context\.userId must be a string/);
  response = await fetch(`${frontendApi}?currentTime=yesterday`, { headers: { Authorization: tokens.frontend } });
  assert.equal(response.status, 400);
  assert.match((await response.json()).error.message, /currentTime must be an RFC 3339 time/);
  response = await fetch(ofrep, { method: 'POST', headers: { ...json, Authorization: tokens.frontend }, body: '{"context":' });
  assert.equal(response.status, 400);
  const parse = await response.json();
  assert.equal(parse.errorCode, 'PARSE_ERROR');
  assert.match(parse.errorDetails, /not JSON/);
  response = await fetch(`${ofrep}/dark-mode`, { method: 'POST', headers: { ...json, Authorization: tokens.frontend },
    body: JSON.stringify({ context: { targetingKey: 7 } }) });
  assert.equal(response.status, 400);
  assert.deepEqual(await response.json(), { key: 'dark-mode', errorCode: 'INVALID_CONTEXT',
    errorDetails: 'context.targetingKey must be a string, not a number' });

  // 2 MiB bodies: 413.
  for (const path of ['/api/frontend', '/ofrep/v1/evaluate/flags', '/api/frontend/client/metrics']) {
    const { status, body } = await postOversized(path, { Authorization: tokens.frontend });
    assert.equal(status, 413, path);
    assert.match(JSON.parse(body).error.message, /limited to 1048576 bytes/);
  }
});

/**
 * POSTs a 2 MiB body on a connection of its own (`keepAlive`: one that asks to be kept open).
 * The server answers 413 and closes the connection without saying `Connection: close`, so a
 * pooled keep-alive connection (fetch's) may be reused and reset under the next request, the
 * SDKs' polls included; see the CORS/413 test below.
 */
function postOversized(path, headers, { keepAlive = false } = {}) {
  const body = JSON.stringify({ context: { userId: 'x'.repeat(2 * 1024 * 1024) } });
  const agent = keepAlive ? new http.Agent({ keepAlive: true }) : false;
  return new Promise((resolve, reject) => {
    const request = http.request(new URL(path, portal.url), {
      method: 'POST', agent,
      headers: { ...headers, 'Content-Type': 'application/json', ...(keepAlive ? {} : { Connection: 'close' }) },
    }, (response) => {
      let text = '';
      response.setEncoding('utf8');
      response.on('data', (chunk) => { text += chunk; });
      response.on('end', () => resolve({ status: response.statusCode, headers: response.headers, body: text }));
    });
    request.on('error', reject);
    request.end(body);
  }).finally(() => agent && agent.destroy());
}

test('a browser on another origin may call the Frontend API and OFREP, and read their refusals', async () => {
  const origin = 'https://app.studybuddy.example';
  const problems = [];
  for (const [path, method, headers] of [
    ['/api/frontend', 'GET', 'authorization,unleash-appname,unleash-connection-id,unleash-sdk'],
    ['/ofrep/v1/evaluate/flags', 'POST', 'x-api-key,content-type,if-none-match'],
  ]) {
    const preflight = await fetch(`${portal.url}${path}`, { method: 'OPTIONS', headers: {
      Origin: origin, 'Access-Control-Request-Method': method, 'Access-Control-Request-Headers': headers,
    } });
    if (!preflight.ok || !preflight.headers.get('access-control-allow-origin')) {
      problems.push(`OPTIONS ${path} (preflight of ${method}) answered ${preflight.status} ${await preflight.text()}`);
    }
  }
  const refused = await fetch(`${portal.url}/api/frontend`, { headers: { Origin: origin, Authorization: 'studybuddy:staging.nope' } });
  if (refused.status !== 401 || !refused.headers.get('access-control-allow-origin')) {
    problems.push(`a bad token got ${refused.status} without Access-Control-Allow-Origin: a browser app sees a network error`);
  }
  const tooLarge = await postOversized('/api/frontend', { Origin: origin, Authorization: tokens.frontend });
  if (tooLarge.status !== 413 || !tooLarge.headers['access-control-allow-origin']) {
    problems.push(`a 2 MiB body got ${tooLarge.status} without Access-Control-Allow-Origin`);
  }
  try {
    const kept = await postOversized('/api/frontend', { Authorization: tokens.frontend }, { keepAlive: true });
    if (kept.headers.connection !== 'close') {
      problems.push(`a 413 on a keep-alive connection closes it without \`Connection: close\` (sent: ${kept.headers.connection})`);
    }
  } catch (error) {
    problems.push(`a 2 MiB body on a keep-alive connection failed before its answer: ${error.code ?? error.message}`);
  }
  assert.deepEqual(problems, []);
});
