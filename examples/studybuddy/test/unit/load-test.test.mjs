import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFile, rm } from "node:fs/promises";
import http from "node:http";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import {
  isLoopback,
  loadTest,
  pageAssets,
  parseDuration,
  percentile,
  summarize,
} from "../../scripts/load-test.mjs";

// The server runs in this process, so the command must run asynchronously (spawnSync would
// block the server it is testing).
function run(args) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, args);
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("close", (status) => resolve({ status, stdout, stderr }));
  });
}

let server;
let base;
let slow = 0;

before(async () => {
  server = http.createServer((req, res) => {
    if (req.url === "/") {
      res.writeHead(200, { "content-type": "text/html" });
      res.end(
        '<link rel="stylesheet" href="a.css"><script src="/b.js"></script><img src="https://cdn.example/x.png">',
      );
    } else if (req.url === "/missing") {
      res.writeHead(404).end();
    } else {
      setTimeout(() => res.writeHead(200).end("ok"), slow);
    }
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${server.address().port}/`;
});
after(() => server.close());

test("durations", () => {
  assert.equal(parseDuration("2m"), 120_000);
  assert.equal(parseDuration("1m30s"), 90_000);
  assert.equal(parseDuration("45s"), 45_000);
  assert.equal(parseDuration("250ms"), 250);
  assert.equal(parseDuration("1h"), 3_600_000);
  assert.throws(() => parseDuration("2 minutes"));
  assert.throws(() => parseDuration(""));
});

test("percentiles by nearest rank", () => {
  const sorted = Array.from({ length: 100 }, (_, i) => i + 1);
  assert.equal(percentile(sorted, 95), 95);
  assert.equal(percentile(sorted, 50), 50);
  assert.equal(percentile([7], 99), 7);
  assert.equal(percentile([], 95), null);
  assert.deepEqual(summarize([3, 1, 2]), { min: 1, p50: 2, p90: 3, p95: 3, p99: 3, max: 3 });
});

test("a page's same-origin assets join the request mix", () => {
  const html =
    '<script src="app.1.js"></script><link href="/s.css" rel="stylesheet"><img src="//other.example/i.png">';
  assert.deepEqual(pageAssets(html, "http://127.0.0.1:3000/env/staging/"), [
    "http://127.0.0.1:3000/env/staging/app.1.js",
    "http://127.0.0.1:3000/s.css",
  ]);
});

test("only loopback targets by default", () => {
  assert.ok(isLoopback("http://127.0.0.1:3000/"));
  assert.ok(isLoopback("http://localhost/"));
  assert.ok(isLoopback("http://[::1]:8080/"));
  assert.ok(!isLoopback("http://192.168.1.10/"));
  assert.ok(!isLoopback("https://example.org/"));
});

test("concurrent users really send requests, per target", async () => {
  slow = 0;
  const report = await loadTest({ url: base, users: 8, durationMs: 300, paths: ["missing"] });
  // Every user sent requests; how many fit in 300 ms depends on the machine's load, so the
  // count is not a measure here (the load test's thresholds are).
  assert.ok(report.requests >= 8, `${report.requests} requests`);
  assert.deepEqual(Object.keys(report.targets), [base, `${base}missing`, `${base}a.css`, `${base}b.js`]);
  assert.equal(report.errors, report.targets[`${base}missing`].requests);
  assert.ok(report.errors > 0);
  assert.ok(report.latency_ms.p95 >= report.latency_ms.p50);
});

test("the command fails when p95 is above the threshold and writes its report", async () => {
  slow = 40;
  const out = path.join(tmpdir(), `studybuddy-perf-${process.pid}.json`);
  const script = new URL("../../scripts/load-test.mjs", import.meta.url).pathname;
  const args = [script, "--url", `${base}slow`, "--users", "4", "--duration", "400ms", "--out", out];
  try {
    const failing = await run([...args, "--p95", "20"]);
    assert.equal(failing.status, 1, failing.stdout + failing.stderr);
    assert.match(failing.stderr, /FAILED: p95 [\d.]+ ms is above 20 ms/);
    const report = JSON.parse(await readFile(out, "utf8"));
    assert.equal(report.passed, false);
    assert.ok(report.latency_ms.p95 >= 40);
    const passing = await run([...args, "--p95", "2000"]);
    assert.equal(passing.status, 0, passing.stdout + passing.stderr);
    const remote = await run([script, "--url", "http://10.1.2.3/", "--p95", "9"]);
    assert.equal(remote.status, 2);
    assert.match(remote.stderr, /not on this machine/);
  } finally {
    await rm(out, { force: true });
  }
});

test("think time spaces a user's rounds out", async () => {
  slow = 0;
  const report = await loadTest({ url: base, users: 2, durationMs: 500, thinkMs: 200, assets: false });
  // Two users, 0.5 s, a pause of 100–300 ms after each request: a handful, not hundreds.
  assert.ok(report.requests >= 2 && report.requests <= 12, `${report.requests} requests`);
  assert.equal(report.think_ms, 200);
});
