import assert from "node:assert/strict";
import { test } from "node:test";
import { checkMigrations, readMigrations } from "../../src/migrations.mjs";

const sql = "create table t (id int);";
const m = (file, body = sql) => ({ file, sql: body });

test("the repository's migrations are in order and apply in a transaction", async () => {
  const migrations = await readMigrations(new URL("../../db/migrations", import.meta.url).pathname);
  assert.ok(migrations.length >= 3);
  migrations.forEach((migration, i) => {
    assert.equal(migration.version, i + 1);
    assert.match(migration.sha256, /^[0-9a-f]{64}$/);
    assert.match(
      migration.down ?? "",
      /\bdrop\b/,
      `${migration.file} has a down script that drops what it made`,
    );
  });
});

test("a down script sits beside the migration it undoes and is held to the same rules", () => {
  assert.deepEqual(
    checkMigrations([m("0001_create_t.sql"), m("0001_create_t.down.sql", "drop table t;")]),
    [],
  );
  const problems = checkMigrations([
    m("0001_create_t.sql"),
    m("0001_create_x.down.sql", "drop table x;"),
    m("0002_gone.down.sql", "drop table y;"),
    m("0001_create_t.down.sql", "begin;\ndrop table t;\ncommit;"),
  ]).join("\n");
  assert.match(
    problems,
    /0001_create_x\.down\.sql: undoes a migration that is not here \(0001_create_x\.sql\)/,
  );
  assert.match(problems, /0002_gone\.down\.sql: undoes a migration that is not here/);
  assert.match(problems, /0001_create_t\.down\.sql: controls the transaction/);
  assert.match(
    checkMigrations([m("0001_a.sql"), m("0001_a.down.sql", "-- later\n")]).join(),
    /down\.sql: has no SQL/,
  );
});

test("well-formed migrations have no problems", () => {
  assert.deepEqual(checkMigrations([m("0001_create_t.sql"), m("0002_add_index.sql")]), []);
});

test("names must be NNNN_words.sql", () => {
  const problems = checkMigrations([m("0001_Create-T.sql"), m("1_x.sql"), m("0001_ok.sql"), m("notes.txt")]);
  assert.equal(problems.length, 3);
  assert.match(problems[0], /0001_Create-T\.sql: not a migration name/);
});

test("versions start at 0001 with no gaps and no duplicates", () => {
  assert.match(checkMigrations([m("0002_late.sql")]).join("\n"), /expected version 0001/);
  assert.match(
    checkMigrations([m("0001_a.sql"), m("0003_c.sql")]).join("\n"),
    /0003_c\.sql: expected version 0002/,
  );
  assert.match(checkMigrations([m("0001_a.sql"), m("0001_b.sql")]).join("\n"), /also used by 0001_a\.sql/);
});

test("empty files and statements that cannot share a transaction are refused", () => {
  assert.match(checkMigrations([m("0001_a.sql", "-- nothing yet\n")]).join(), /has no SQL/);
  assert.match(
    checkMigrations([m("0001_a.sql", "begin;\n" + sql + "\ncommit;")]).join(),
    /controls the transaction/,
  );
  assert.match(
    checkMigrations([m("0001_a.sql", "create index concurrently i on t (id);")]).join(),
    /CONCURRENTLY/,
  );
  assert.match(checkMigrations([m("0001_a.sql", "vacuum t;")]).join(), /cannot run inside a transaction/);
});

test("begin and end inside a function body, a string or a comment are fine", () => {
  const body = `
    -- begin; commit; (prose)
    create function f() returns trigger language plpgsql as $$
    begin
        return new;
    end;
    $$;
    insert into t values ('
    commit');`;
  assert.deepEqual(checkMigrations([m("0001_a.sql", body)]), []);
});
