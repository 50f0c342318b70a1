// The HTTP API over a real socket, with the in-memory store and a fixed clock.

import assert from "node:assert/strict";
import { mkdtemp, mkdir, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { matchRoute } from "../../src/app.mjs";
import { createMemoryStore } from "../../src/store/memory.mjs";
import { startApi } from "../support/server.mjs";

let clock = new Date("2025-03-10T09:00:00Z");
const now = () => clock;

describe("the API with an in-memory store", () => {
  let api;
  let site;

  before(async () => {
    site = await mkdtemp(path.join(tmpdir(), "studybuddy-site-"));
    await writeFile(path.join(site, "index.html"), "<h1>StudyBuddy</h1>");
    await writeFile(path.join(site, "app.3f2a9c1b.js"), "console.log(1)");
    await mkdir(path.join(site, "sub"));
    await writeFile(path.join(site, "secret.txt"), "outside?");
    api = await startApi({
      store: createMemoryStore({ now }),
      now,
      version: "9.9.9",
      staticDir: path.join(site, "sub"),
      corsOrigins: ["https://app.example"],
    });
  });
  after(() => api.close());

  const plan = (overrides = {}) =>
    api.call("POST", "/api/sessions", {
      subject: "Biology",
      starts_at: "2025-03-10T18:00:00+01:00",
      duration_minutes: 45,
      ...overrides,
    });

  test("healthz reports the version and the database", async () => {
    const r = await api.call("GET", "/healthz");
    assert.equal(r.status, 200);
    assert.deepEqual(r.body, { status: "ok", version: "9.9.9", database: "ok" });
  });

  test("a planned session can be read, listed, changed and deleted", async () => {
    const created = await plan({ topic: "Cells", remind_minutes_before: 15 });
    assert.equal(created.status, 201);
    assert.equal(created.headers.get("location"), `/api/sessions/${created.body.id}`);
    assert.equal(created.body.remind_at, "2025-03-10T16:45:00.000Z");

    const read = await api.call("GET", `/api/sessions/${created.body.id}`);
    assert.deepEqual(read.body, created.body);

    const list = await api.call("GET", "/api/sessions?status=planned");
    assert.ok(list.body.sessions.some((s) => s.id === created.body.id));

    const changed = await api.call("PATCH", `/api/sessions/${created.body.id}`, { duration_minutes: 60 });
    assert.equal(changed.status, 200);
    assert.equal(changed.body.duration_minutes, 60);
    assert.equal(changed.body.topic, "Cells");

    const deleted = await api.call("DELETE", `/api/sessions/${created.body.id}`);
    assert.equal(deleted.status, 204);
    assert.equal((await api.call("GET", `/api/sessions/${created.body.id}`)).status, 404);
    assert.equal((await api.call("DELETE", `/api/sessions/${created.body.id}`)).status, 404);
  });

  test("completing sessions on consecutive days builds a streak in the student's zone", async () => {
    for (const day of ["2025-03-08", "2025-03-09", "2025-03-10"]) {
      clock = new Date(`${day}T20:00:00Z`);
      const { body } = await plan({ starts_at: `${day}T19:00:00Z` });
      const done = await api.call("PATCH", `/api/sessions/${body.id}`, { completed: true });
      assert.equal(done.body.completed_at, clock.toISOString());
    }
    clock = new Date("2025-03-10T21:00:00Z");
    const streak = await api.call("GET", "/api/streak?tz=Europe/Berlin");
    assert.equal(streak.status, 200);
    assert.equal(streak.body.current, 3);
    assert.equal(streak.body.today, "2025-03-10");
    assert.equal(streak.body.today_done, true);
    // 23:00 UTC is already the next day in Berlin, so the streak is alive but today is open.
    clock = new Date("2025-03-10T23:30:00Z");
    const later = await api.call("GET", "/api/streak?tz=Europe/Berlin");
    assert.equal(later.body.today, "2025-03-11");
    assert.equal(later.body.current, 3);
    assert.equal(later.body.today_done, false);
    assert.equal((await api.call("GET", "/api/streak?tz=Nowhere/Land")).status, 422);
  });

  test("reminders due within the window come earliest first", async () => {
    clock = new Date("2025-03-20T08:00:00Z");
    const soon = await plan({ starts_at: "2025-03-20T08:30:00Z", remind_minutes_before: 15 });
    const sooner = await plan({ starts_at: "2025-03-20T08:20:00Z", remind_minutes_before: 30 });
    await plan({ starts_at: "2025-03-20T12:00:00Z", remind_minutes_before: 15 });
    await plan({ starts_at: "2025-03-20T08:10:00Z" });
    const r = await api.call("GET", "/api/reminders?within_minutes=60");
    assert.equal(r.status, 200);
    assert.deepEqual(
      r.body.reminders.map((s) => s.id),
      [sooner.body.id, soon.body.id],
    );
    assert.equal(r.body.now, "2025-03-20T08:00:00.000Z");
  });

  test("invalid input gets a 422 naming the fields", async () => {
    const r = await plan({ duration_minutes: 1000, mood: "great" });
    assert.equal(r.status, 422);
    assert.equal(r.body.error.code, "validation_failed");
    assert.deepEqual(Object.keys(r.body.error.fields).sort(), ["duration_minutes", "mood"]);
  });

  test("bodies must be JSON objects of at most 64 KiB sent as application/json", async () => {
    assert.equal((await api.call("POST", "/api/sessions", "{not json")).status, 400);
    assert.equal((await api.call("POST", "/api/sessions", "[]")).status, 400);
    const plain = await fetch(`${api.base}/api/sessions`, { method: "POST", body: "subject=x" });
    assert.equal(plain.status, 415);
    const huge = await api.call("POST", "/api/sessions", { subject: "x".repeat(70_000) });
    assert.equal(huge.status, 413);
  });

  test("unknown ids, paths and methods are 404 and 405", async () => {
    assert.equal((await api.call("GET", "/api/sessions/42")).status, 404);
    assert.equal((await api.call("GET", "/api/nothing")).status, 404);
    const r = await api.call("PUT", "/api/sessions");
    assert.equal(r.status, 405);
    assert.equal(r.headers.get("allow"), "GET, POST");
  });

  test("CORS is answered for allowed origins only", async () => {
    const allowed = await api.call("GET", "/healthz", undefined, { origin: "https://app.example" });
    assert.equal(allowed.headers.get("access-control-allow-origin"), "https://app.example");
    const other = await api.call("GET", "/healthz", undefined, { origin: "https://evil.example" });
    assert.equal(other.headers.get("access-control-allow-origin"), null);
    const preflight = await api.call("OPTIONS", "/api/sessions", undefined, {
      origin: "https://app.example",
    });
    assert.equal(preflight.status, 204);
    assert.match(preflight.headers.get("access-control-allow-methods"), /PATCH/);
  });

  test("static files: hashed ones are immutable, nothing outside the directory is served", async () => {
    await writeFile(path.join(site, "sub", "index.html"), "<h1>StudyBuddy</h1>");
    await writeFile(path.join(site, "sub", "app.3f2a9c1b.js"), "console.log(1)");
    const index = await api.call("GET", "/");
    assert.equal(index.status, 200);
    assert.equal(index.headers.get("cache-control"), "no-cache");
    const hashed = await api.call("GET", "/app.3f2a9c1b.js");
    assert.match(hashed.headers.get("cache-control"), /immutable/);
    assert.match(hashed.headers.get("content-type"), /javascript/);
    assert.equal((await api.call("GET", "/..%2fsecret.txt")).status, 404);
    assert.equal((await api.call("GET", "/%2e%2e/secret.txt")).status, 404);
    assert.equal((await api.call("GET", "/missing.js")).status, 404);
  });
});

test("routes match exactly, and HEAD follows GET", () => {
  assert.equal(matchRoute("GET", "/api/sessions/abc").route.operationId, "getSession");
  assert.equal(matchRoute("HEAD", "/healthz").route.operationId, "getHealth");
  assert.deepEqual(matchRoute("POST", "/api/streak"), { allowed: ["GET"] });
  assert.equal(matchRoute("GET", "/api/sessions/abc/extra"), null);
});

test("a store that fails makes healthz 503 and other calls 500 without leaking the cause", async () => {
  const broken = new Proxy(
    {},
    {
      get: () => async () => {
        throw new Error("connection refused to 10.0.0.5");
      },
    },
  );
  const api = await startApi({ store: broken });
  try {
    const health = await api.call("GET", "/healthz");
    assert.equal(health.status, 503);
    assert.equal(health.body.database, "unreachable");
    const list = await api.call("GET", "/api/sessions");
    assert.equal(list.status, 500);
    assert.equal(list.body.error.code, "internal");
    assert.doesNotMatch(list.text, /10\.0\.0\.5/);
  } finally {
    await api.close();
  }
});
