// Database migrations: plain SQL files `db/migrations/NNNN_name.sql`, applied in order, each
// once, all pending ones in one transaction, and recorded in the table `schema_migration`.
// `NNNN_name.down.sql` beside a migration is its undo (drop what it made, in reverse order): this
// tool checks it but never runs it; Flightdeck runs the down scripts when it rolls a release back.

import { createHash } from "node:crypto";
import { readdir, readFile } from "node:fs/promises";
import path from "node:path";

export const MIGRATION_FILE = /^(\d{4})_([a-z0-9]+(?:_[a-z0-9]+)*)\.sql$/;
export const DOWN_FILE = /^(\d{4})_([a-z0-9]+(?:_[a-z0-9]+)*)\.down\.sql$/;

// Statements that cannot run inside the transaction the migrations share.
const NOT_IN_A_TRANSACTION = [
  [
    /^\s*(begin|start\s+transaction|commit|end|rollback|savepoint|release)\b/im,
    "controls the transaction itself",
  ],
  [/\bconcurrently\b/i, "uses CONCURRENTLY, which cannot run inside a transaction"],
  [/^\s*(vacuum|create\s+database|drop\s+database|alter\s+system)\b/im, "cannot run inside a transaction"],
];

export class MigrationError extends Error {
  constructor(problems) {
    super(problems.join("\n"));
    this.problems = problems;
  }
}

/** SQL without comments, string literals and dollar-quoted bodies (a plpgsql `begin … end`). */
function statementsOnly(sql) {
  return sql
    .replace(/\/\*[\s\S]*?\*\//g, " ")
    .replace(/--[^\n]*/g, "")
    .replace(/\$([A-Za-z_]\w*)?\$[\s\S]*?\$\1\$/g, "''")
    .replace(/'(?:[^']|'')*'/g, "''");
}

/**
 * Checks a directory listing and the files' contents (`[{ file, sql }]`) and returns the
 * problems found, each a sentence naming the file. Empty when all is well.
 */
export function checkMigrations(entries) {
  const problems = [];
  const seen = new Map();
  const versions = [];
  const downs = [];
  const checkSql = (file, sql) => {
    if (statementsOnly(sql).trim() === "") problems.push(`${file}: has no SQL`);
    for (const [pattern, why] of NOT_IN_A_TRANSACTION) {
      if (pattern.test(statementsOnly(sql))) problems.push(`${file}: ${why}`);
    }
  };
  for (const { file, sql } of entries) {
    const down = DOWN_FILE.exec(file);
    if (down) {
      downs.push(file);
      // Down scripts run in one transaction too, newest first.
      checkSql(file, sql);
      continue;
    }
    const match = MIGRATION_FILE.exec(file);
    if (!match) {
      problems.push(
        `${file}: not a migration name; use NNNN_words.sql (four digits, then lower-case words joined by _), ` +
          "or NNNN_words.down.sql for its undo",
      );
      continue;
    }
    const version = Number(match[1]);
    if (seen.has(version)) {
      problems.push(`${file}: version ${match[1]} is also used by ${seen.get(version)}`);
      continue;
    }
    seen.set(version, file);
    versions.push(version);
    checkSql(file, sql);
  }
  const ups = new Set(seen.values());
  for (const file of downs) {
    const up = file.replace(/\.down\.sql$/, ".sql");
    if (!ups.has(up)) problems.push(`${file}: undoes a migration that is not here (${up})`);
  }
  versions.sort((a, b) => a - b);
  versions.forEach((version, index) => {
    if (version !== index + 1) {
      const expected = String(index + 1).padStart(4, "0");
      problems.push(
        `${seen.get(version)}: expected version ${expected} here; versions start at 0001 with no gaps`,
      );
    }
  });
  return [...new Set(problems)];
}

/** Reads and checks the migrations in `dir`; throws MigrationError listing every problem. */
export async function readMigrations(dir) {
  const names = (await readdir(dir)).filter((name) => !name.startsWith(".")).sort();
  const entries = await Promise.all(
    names.map(async (file) => ({ file, sql: await readFile(path.join(dir, file), "utf8") })),
  );
  const problems = checkMigrations(entries);
  if (problems.length) throw new MigrationError(problems);
  const downs = new Map(
    entries.filter(({ file }) => DOWN_FILE.test(file)).map(({ file, sql }) => [file, sql]),
  );
  return entries
    .filter(({ file }) => MIGRATION_FILE.test(file))
    .map(({ file, sql }) => {
      const [, version, name] = MIGRATION_FILE.exec(file);
      return {
        version: Number(version),
        name,
        file,
        sql,
        sha256: createHash("sha256").update(sql).digest("hex"),
        // The undo's SQL, or null when the migration has none.
        down: downs.get(`${version}_${name}.down.sql`) ?? null,
      };
    });
}

/**
 * Applies the pending migrations with `client` (a pg.Client or pool client) in one transaction,
 * under an advisory lock so two deploys never migrate at once. Refuses when an applied
 * migration was edited afterwards or when the database is ahead of these files.
 * @returns {Promise<{applied: object[], current: number}>}
 */
export async function migrate(client, migrations, { log = () => {} } = {}) {
  await client.query("begin");
  try {
    await client.query("select pg_advisory_xact_lock(hashtext('studybuddy.schema_migration'))");
    await client.query(`create table if not exists schema_migration (
      version integer primary key,
      name text not null,
      sha256 text not null,
      applied_at timestamptz not null default now()
    )`);
    const { rows } = await client.query(
      "select version, name, sha256 from schema_migration order by version",
    );
    const byVersion = new Map(migrations.map((m) => [m.version, m]));
    const problems = [];
    for (const row of rows) {
      const known = byVersion.get(row.version);
      if (!known) {
        problems.push(
          `the database has migration ${row.version} (${row.name}), which these files do not have`,
        );
      } else if (known.sha256 !== row.sha256) {
        problems.push(`${known.file} was changed after it was applied; add a new migration instead`);
      }
    }
    if (problems.length) throw new MigrationError(problems);
    const done = new Set(rows.map((row) => row.version));
    const applied = [];
    for (const migration of migrations) {
      if (done.has(migration.version)) continue;
      const started = performance.now();
      try {
        await client.query(migration.sql);
      } catch (error) {
        throw new MigrationError([`${migration.file}: ${error.message}`]);
      }
      await client.query("insert into schema_migration (version, name, sha256) values ($1, $2, $3)", [
        migration.version,
        migration.name,
        migration.sha256,
      ]);
      applied.push(migration);
      log(`applied ${migration.file} (${Math.round(performance.now() - started)} ms)`);
    }
    await client.query("commit");
    const current = migrations.length ? migrations[migrations.length - 1].version : 0;
    return { applied, current };
  } catch (error) {
    await client.query("rollback").catch(() => {});
    throw error;
  }
}
