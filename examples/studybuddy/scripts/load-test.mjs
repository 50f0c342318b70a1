#!/usr/bin/env node
// A load test: N virtual users issue HTTP requests concurrently for a while, then the p95
// latency (and the error rate) decide whether it passed.
//
//   node scripts/load-test.mjs --url URL --users 50 --duration 2m --p95 800
//        [--think 1s] [--paths /healthz,/api/sessions] [--no-assets] [--max-error-rate 1]
//        [--out reports/performance.json] [--allow-remote]
//
// Each user requests the targets one after another, over and over, until the time is up: the
// URL itself, the extra --paths (relative to the URL), and, when the URL returns HTML, the
// scripts, styles and images that page loads from its own origin (like a browser's first
// visit; --no-assets leaves them out). With --think, each user pauses about that long (±50 %)
// between rounds, like a person reading the page; without it users go as fast as they can.
// Latency is measured to the last byte of each response.
// A response outside 200–399 or a failed request is an error. The results, per target too,
// go to --out as JSON. Targets must be on this machine (loopback) unless --allow-remote.

import http from "node:http";
import https from "node:https";
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { parseArgs } from "node:util";

const REQUEST_TIMEOUT_MS = 10_000;

/** `45s`, `2m`, `1m30s`, `500ms`, `1h` → milliseconds. */
export function parseDuration(text) {
  const match = /^(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?$/.exec(String(text).trim());
  if (!match || match.slice(1).every((part) => part === undefined)) {
    throw new Error(`not a duration: ${text} (use e.g. 45s, 2m, 1m30s)`);
  }
  const [h, m, s, ms] = match.slice(1).map((part) => Number(part ?? 0));
  return ((h * 60 + m) * 60 + s) * 1000 + ms;
}

/** The nearest-rank percentile `p` (0–100) of `sorted` (ascending). */
export function percentile(sorted, p) {
  if (sorted.length === 0) return null;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))];
}

/** Latency statistics (ms, rounded to 0.1) for a list of samples. */
export function summarize(latencies) {
  const sorted = [...latencies].sort((a, b) => a - b);
  const round = (v) => (v === null ? null : Math.round(v * 10) / 10);
  return {
    min: round(sorted[0] ?? null),
    p50: round(percentile(sorted, 50)),
    p90: round(percentile(sorted, 90)),
    p95: round(percentile(sorted, 95)),
    p99: round(percentile(sorted, 99)),
    max: round(sorted.at(-1) ?? null),
  };
}

/** Same-origin scripts, styles and images an HTML page loads. */
export function pageAssets(html, pageUrl) {
  const page = new URL(pageUrl);
  const found = new Set();
  for (const match of html.matchAll(/<(?:script|link|img)\b[^>]*?\b(?:src|href)=["']([^"']+)["']/gi)) {
    const url = new URL(match[1], page);
    if (url.origin === page.origin && url.href !== page.href) found.add(url.href);
  }
  return [...found];
}

export function isLoopback(url) {
  const host = new URL(url).hostname.replace(/^\[|\]$/g, "");
  return host === "localhost" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host);
}

function request(agents, target) {
  return new Promise((resolve) => {
    const url = new URL(target);
    const client = url.protocol === "https:" ? https : http;
    const started = performance.now();
    const req = client.get(url, { agent: agents[url.protocol], timeout: REQUEST_TIMEOUT_MS }, (res) => {
      res.on("data", () => {});
      res.on("end", () => resolve({ status: res.statusCode, ms: performance.now() - started }));
      res.on("error", (error) => resolve({ error: error.message, ms: performance.now() - started }));
    });
    req.on("timeout", () => req.destroy(new Error(`timed out after ${REQUEST_TIMEOUT_MS} ms`)));
    req.on("error", (error) => resolve({ error: error.message, ms: performance.now() - started }));
  });
}

async function fetchText(url) {
  const response = await fetch(url);
  return {
    status: response.status,
    type: response.headers.get("content-type") ?? "",
    text: await response.text(),
  };
}

/** Runs the test; returns the report (the caller decides pass or fail from it). */
export async function loadTest({
  url,
  users,
  durationMs,
  paths = [],
  assets = true,
  thinkMs = 0,
  maxRequests = 5_000_000,
}) {
  const targets = [url, ...paths.map((p) => new URL(p.replace(/^\//, ""), url).href)];
  const first = await fetchText(url);
  if (first.status >= 400) throw new Error(`${url} answered ${first.status} before the test started`);
  if (assets && first.type.includes("text/html")) targets.push(...pageAssets(first.text, url));

  const agents = {
    "http:": new http.Agent({ keepAlive: true, maxSockets: users }),
    "https:": new https.Agent({ keepAlive: true, maxSockets: users }),
  };
  const samples = new Map(targets.map((t) => [t, { latencies: [], errors: 0, statuses: {} }]));
  const allLatencies = [];
  let total = 0;
  let errors = 0;
  const firstErrors = [];
  const started = performance.now();
  const deadline = started + durationMs;

  async function user() {
    while (performance.now() < deadline && total < maxRequests) {
      for (const target of targets) {
        if (performance.now() >= deadline || total >= maxRequests) return;
        total += 1;
        const result = await request(agents, target);
        const sample = samples.get(target);
        sample.latencies.push(result.ms);
        allLatencies.push(result.ms);
        const failed = result.error !== undefined || result.status < 200 || result.status >= 400;
        if (result.status !== undefined)
          sample.statuses[result.status] = (sample.statuses[result.status] ?? 0) + 1;
        if (failed) {
          errors += 1;
          sample.errors += 1;
          if (firstErrors.length < 5)
            firstErrors.push(`${target}: ${result.error ?? `HTTP ${result.status}`}`);
        }
      }
      if (thinkMs > 0) {
        const pause = Math.min(thinkMs * (0.5 + Math.random()), deadline - performance.now());
        if (pause > 0) await new Promise((resolve) => setTimeout(resolve, pause));
      }
    }
  }
  await Promise.all(Array.from({ length: users }, user));
  const elapsed = (performance.now() - started) / 1000;
  agents["http:"].destroy();
  agents["https:"].destroy();

  return {
    url,
    users,
    think_ms: thinkMs,
    duration_s: Math.round(elapsed * 10) / 10,
    requests: total,
    errors,
    error_rate_percent: total ? Math.round((errors / total) * 10000) / 100 : 0,
    requests_per_s: Math.round((total / elapsed) * 10) / 10,
    latency_ms: summarize(allLatencies),
    first_errors: firstErrors,
    targets: Object.fromEntries(
      [...samples].map(([target, s]) => [
        target,
        {
          requests: s.latencies.length,
          errors: s.errors,
          statuses: s.statuses,
          latency_ms: summarize(s.latencies),
        },
      ]),
    ),
  };
}

if (process.argv[1] === import.meta.filename) {
  const { values } = parseArgs({
    options: {
      url: { type: "string" },
      users: { type: "string", default: "10" },
      duration: { type: "string", default: "30s" },
      think: { type: "string", default: "0s" },
      p95: { type: "string" },
      paths: { type: "string", default: "" },
      "no-assets": { type: "boolean", default: false },
      "max-error-rate": { type: "string", default: "1" },
      out: { type: "string", default: "reports/performance.json" },
      "allow-remote": { type: "boolean", default: false },
    },
  });
  const fail = (message) => {
    console.error(`load-test: ${message}`);
    process.exit(2);
  };
  if (!values.url || !values.p95) {
    fail("usage: load-test.mjs --url URL --users N --duration 2m --p95 MS [--paths a,b] [--no-assets]");
  }
  let url;
  try {
    url = new URL(values.url).href;
  } catch {
    fail(`not a URL: ${values.url}`);
  }
  if (!isLoopback(url) && !values["allow-remote"]) {
    fail(`${url} is not on this machine; pass --allow-remote to load-test another host on purpose`);
  }
  const users = Number(values.users);
  const p95Limit = Number(values.p95);
  const maxErrorRate = Number(values["max-error-rate"]);
  if (!Number.isInteger(users) || users < 1 || users > 1000)
    fail("--users must be a whole number from 1 to 1000");
  if (!(p95Limit > 0)) fail("--p95 must be a number of milliseconds");
  if (!(maxErrorRate >= 0)) fail("--max-error-rate must be a percentage");
  let durationMs;
  let thinkMs;
  try {
    durationMs = parseDuration(values.duration);
    thinkMs = values.think === "0" ? 0 : parseDuration(values.think);
  } catch (error) {
    fail(error.message);
  }

  const paths = values.paths
    .split(",")
    .map((p) => p.trim())
    .filter(Boolean);
  console.log(
    `load-test: ${users} users for ${values.duration} against ${url}; p95 must stay under ${p95Limit} ms`,
  );
  let report;
  try {
    report = await loadTest({ url, users, durationMs, thinkMs, paths, assets: !values["no-assets"] });
  } catch (error) {
    console.error(`load-test: ${error.message}`);
    process.exit(1);
  }
  const verdicts = [];
  if (report.requests === 0) verdicts.push("no request was made");
  if (report.latency_ms.p95 > p95Limit)
    verdicts.push(`p95 ${report.latency_ms.p95} ms is above ${p95Limit} ms`);
  if (report.error_rate_percent > maxErrorRate) {
    verdicts.push(`${report.error_rate_percent}% of requests failed, more than ${maxErrorRate}%`);
  }
  report.thresholds = { p95_ms: p95Limit, max_error_rate_percent: maxErrorRate };
  report.passed = verdicts.length === 0;
  report.failures = verdicts;
  await mkdir(path.dirname(path.resolve(values.out)), { recursive: true });
  await writeFile(values.out, `${JSON.stringify(report, null, 2)}\n`);

  for (const [target, t] of Object.entries(report.targets)) {
    console.log(`  ${target}  ${t.requests} requests, ${t.errors} errors, p95 ${t.latency_ms.p95} ms`);
  }
  const l = report.latency_ms;
  console.log(
    `load-test: ${report.requests} requests in ${report.duration_s} s (${report.requests_per_s}/s), ` +
      `${report.errors} errors; latency p50 ${l.p50} ms, p95 ${l.p95} ms, p99 ${l.p99} ms, max ${l.max} ms`,
  );
  for (const e of report.first_errors) console.log(`  error: ${e}`);
  console.log(`load-test: report in ${values.out}`);
  if (!report.passed) {
    for (const v of verdicts) console.error(`load-test: FAILED: ${v}`);
    process.exit(1);
  }
  console.log("load-test: passed");
}
