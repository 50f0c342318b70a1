// The API against a real PostgreSQL (TEST_DATABASE_URL, which these tests wipe): the
// migrations from scratch, then every endpoint over HTTP on a random port.

import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { after, before, describe, test } from "node:test";
import pg from "pg";
import { MigrationError, migrate, readMigrations } from "../../src/migrations.mjs";
import { createPool, createPostgresStore } from "../../src/store/postgres.mjs";
import { startApi } from "../support/server.mjs";

const databaseUrl = process.env.TEST_DATABASE_URL;
const migrationsDir = new URL("../../db/migrations", import.meta.url).pathname;
let client;
let migrations;

before(async () => {
  assert.ok(databaseUrl, "TEST_DATABASE_URL must name a PostgreSQL database these tests may wipe");
  client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  await client.query(await readFile(new URL("../../db/reset.sql", import.meta.url), "utf8"));
  migrations = await readMigrations(migrationsDir);
});
after(() => client?.end());

describe("migrations", () => {
  test("apply from scratch in order and are recorded", async () => {
    const { applied, current } = await migrate(client, migrations);
    assert.deepEqual(
      applied.map((m) => m.version),
      migrations.map((m) => m.version),
    );
    assert.equal(current, migrations.length);
    const { rows } = await client.query("select version, sha256 from schema_migration order by version");
    assert.deepEqual(
      rows.map((r) => [r.version, r.sha256]),
      migrations.map((m) => [m.version, m.sha256]),
    );
  });

  test("a second run applies nothing", async () => {
    const { applied } = await migrate(client, migrations);
    assert.deepEqual(applied, []);
  });

  test("an applied migration that was edited afterwards is refused", async () => {
    const edited = migrations.map((m, i) => (i === 0 ? { ...m, sha256: "0".repeat(64) } : m));
    await assert.rejects(migrate(client, edited), (error) => {
      assert.ok(error instanceof MigrationError);
      assert.match(error.message, /0001_.*changed after it was applied/);
      return true;
    });
  });

  test("a database ahead of the files is refused, and a failing migration changes nothing", async () => {
    await assert.rejects(migrate(client, migrations.slice(0, 1)), /the database has migration 2/);
    const broken = [
      ...migrations,
      {
        version: migrations.length + 1,
        name: "broken",
        file: "9999_broken.sql",
        sql: "create table half_done (id int); select * from no_such_table;",
        sha256: "f".repeat(64),
      },
    ];
    await assert.rejects(migrate(client, broken), /9999_broken\.sql: .*no_such_table/);
    const { rows } = await client.query("select to_regclass('half_done') as t");
    assert.equal(rows[0].t, null);
  });
});

describe("the API on PostgreSQL", () => {
  let pool;
  let api;
  let clock = null;

  before(async () => {
    pool = createPool(databaseUrl, { max: 5 });
    api = await startApi({ store: createPostgresStore(pool), now: () => clock ?? new Date(), version: "it" });
  });
  after(async () => {
    await api?.close();
    await pool?.end();
  });

  const plan = (overrides = {}) =>
    api.call("POST", "/api/sessions", {
      subject: "Chemistry",
      starts_at: "2030-05-01T16:00:00+02:00",
      duration_minutes: 50,
      ...overrides,
    });

  test("healthz reaches the database", async () => {
    const r = await api.call("GET", "/healthz");
    assert.deepEqual([r.status, r.body.database], [200, "ok"]);
  });

  test("sessions round-trip through the database", async () => {
    const created = await plan({ topic: "Acids", notes: "Chapter 4", remind_minutes_before: 30 });
    assert.equal(created.status, 201);
    assert.match(created.body.id, /^[0-9a-f-]{36}$/);
    assert.equal(created.body.starts_at, "2030-05-01T14:00:00.000Z");
    assert.equal(created.body.remind_at, "2030-05-01T13:30:00.000Z");

    const fetched = await api.call("GET", `/api/sessions/${created.body.id}`);
    assert.deepEqual(fetched.body, created.body);

    const changed = await api.call("PATCH", `/api/sessions/${created.body.id}`, {
      topic: null,
      duration_minutes: 90,
    });
    assert.equal(changed.body.topic, null);
    assert.equal(changed.body.duration_minutes, 90);
    assert.equal(changed.body.notes, "Chapter 4");
    assert.ok(changed.body.updated_at > created.body.updated_at, "the trigger moves updated_at");

    const done = await api.call("PATCH", `/api/sessions/${created.body.id}`, { completed: true });
    assert.equal(done.body.completed, true);
    const again = await api.call("PATCH", `/api/sessions/${created.body.id}`, { completed: true });
    assert.equal(again.body.completed_at, done.body.completed_at, "completing twice keeps the first time");
    const undone = await api.call("PATCH", `/api/sessions/${created.body.id}`, { completed: false });
    assert.equal(undone.body.completed_at, null);

    assert.equal((await api.call("DELETE", `/api/sessions/${created.body.id}`)).status, 204);
    assert.equal((await api.call("GET", `/api/sessions/${created.body.id}`)).status, 404);
    const unknown = "00000000-0000-4000-8000-000000000000";
    assert.equal((await api.call("PATCH", `/api/sessions/${unknown}`, { completed: true })).status, 404);
  });

  test("lists filter by time and status, earliest first, with a limit", async () => {
    await client.query("delete from study_session");
    const a = await plan({ starts_at: "2030-06-01T10:00:00Z" });
    const b = await plan({ starts_at: "2030-06-02T10:00:00Z" });
    const c = await plan({ starts_at: "2030-06-03T10:00:00Z" });
    await api.call("PATCH", `/api/sessions/${b.body.id}`, { completed: true });
    const ids = async (query) =>
      (await api.call("GET", `/api/sessions${query}`)).body.sessions.map((s) => s.id);
    assert.deepEqual(await ids(""), [a.body.id, b.body.id, c.body.id]);
    assert.deepEqual(await ids("?status=planned"), [a.body.id, c.body.id]);
    assert.deepEqual(await ids("?status=completed"), [b.body.id]);
    assert.deepEqual(await ids("?from=2030-06-02T00:00:00Z&to=2030-06-03T10:00:00Z"), [b.body.id]);
    assert.deepEqual(await ids("?limit=1"), [a.body.id]);
  });

  test("the streak counts local days in the student's time zone", async () => {
    await client.query("delete from study_session");
    for (const completedAt of ["2025-03-08T12:00:00Z", "2025-03-09T22:30:00Z", "2025-03-09T23:30:00Z"]) {
      await client.query(
        `insert into study_session (subject, starts_at, duration_minutes, completed_at)
         values ('History', $1::timestamptz - interval '1 hour', 45, $1)`,
        [completedAt],
      );
    }
    clock = new Date("2025-03-10T21:00:00Z");
    try {
      const utc = await api.call("GET", "/api/streak?tz=UTC");
      assert.deepEqual(
        [utc.body.current, utc.body.today_done, utc.body.last_study_day],
        [2, false, "2025-03-09"],
      );
      // In Berlin 23:30 UTC on the 9th is already the 10th: three days in a row, today done.
      const berlin = await api.call("GET", "/api/streak?tz=Europe/Berlin");
      assert.deepEqual([berlin.body.current, berlin.body.longest, berlin.body.today_done], [3, 3, true]);
    } finally {
      clock = null;
    }
  });

  test("reminders come from the database, earliest first", async () => {
    await client.query("delete from study_session");
    clock = new Date("2030-07-01T08:00:00Z");
    try {
      const later = await plan({ starts_at: "2030-07-01T08:40:00Z", remind_minutes_before: 10 });
      const first = await plan({ starts_at: "2030-07-01T08:20:00Z", remind_minutes_before: 30 });
      await plan({ starts_at: "2030-07-01T11:00:00Z", remind_minutes_before: 10 });
      await plan({ starts_at: "2030-07-01T08:30:00Z" });
      const done = await plan({ starts_at: "2030-07-01T08:30:00Z", remind_minutes_before: 10 });
      await api.call("PATCH", `/api/sessions/${done.body.id}`, { completed: true });
      const r = await api.call("GET", "/api/reminders?within_minutes=45");
      assert.deepEqual(
        r.body.reminders.map((s) => s.id),
        [first.body.id, later.body.id],
      );
    } finally {
      clock = null;
    }
  });

  test("the database's own checks back up validation", async () => {
    await assert.rejects(
      client.query(
        "insert into study_session (subject, starts_at, duration_minutes) values ('x', now(), 1000)",
      ),
      (error) => error.code === "23514",
    );
  });

  test("parallel writes all land", async () => {
    await client.query("delete from study_session");
    const results = await Promise.all(
      Array.from({ length: 25 }, (_, i) => plan({ subject: `Parallel ${i}` })),
    );
    assert.ok(results.every((r) => r.status === 201));
    const { rows } = await client.query("select count(*)::int as n from study_session");
    assert.equal(rows[0].n, 25);
  });
});
