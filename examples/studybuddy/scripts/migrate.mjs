#!/usr/bin/env node
// Applies StudyBuddy's pending database migrations.
//
//   node scripts/migrate.mjs --database-url postgres://… [--dir db/migrations] [--status]
//
// The URL may also come from DATABASE_URL. Pending migrations run in one transaction under an
// advisory lock and are recorded in `schema_migration`; running it again applies nothing.
// `--status` lists what is applied and what is pending, and changes nothing.

import { parseArgs } from "node:util";
import pg from "pg";
import { MigrationError, migrate, readMigrations } from "../src/migrations.mjs";

const { values } = parseArgs({
  options: {
    "database-url": { type: "string" },
    dir: { type: "string", default: new URL("../db/migrations", import.meta.url).pathname },
    status: { type: "boolean", default: false },
  },
});

const databaseUrl = values["database-url"] ?? process.env.DATABASE_URL;
if (!databaseUrl) {
  console.error("migrate: give --database-url URL (or set DATABASE_URL)");
  process.exit(2);
}

let client;
try {
  const migrations = await readMigrations(values.dir);
  client = new pg.Client({ connectionString: databaseUrl, application_name: "studybuddy-migrate" });
  await client.connect();
  if (values.status) {
    const exists = await client.query("select to_regclass('schema_migration') is not null as ok");
    const rows = exists.rows[0].ok
      ? (await client.query("select version, applied_at from schema_migration")).rows
      : [];
    const applied = new Map(rows.map((row) => [row.version, row.applied_at]));
    for (const m of migrations) {
      const at = applied.get(m.version);
      console.log(`${at ? "applied" : "pending"}  ${m.file}${at ? `  (${at.toISOString()})` : ""}`);
    }
  } else {
    const { applied, current } = await migrate(client, migrations, { log: (line) => console.log(line) });
    console.log(
      applied.length
        ? `migrate: applied ${applied.length} migration(s); the database is at version ${current}`
        : `migrate: nothing to apply; the database is at version ${current}`,
    );
  }
} catch (error) {
  if (error instanceof MigrationError) {
    for (const problem of error.problems) console.error(`migrate: ${problem}`);
  } else {
    console.error(`migrate: ${error.message}`);
  }
  process.exitCode = 1;
} finally {
  await client?.end().catch(() => {});
}
