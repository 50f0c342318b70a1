#!/usr/bin/env node
// Deploys the StudyBuddy API to an environment.
//
//   node scripts/deploy-api.mjs --env development|staging|production
//
// What it does depends on STUDYBUDDY_DEPLOY_DIR:
//
// - Set: a real deploy to that directory on this machine. The release (src/, db/, api/,
//   package.json and the lock file) is copied to <dir>/<env>/releases/<version>-<commit>-<time>/,
//   its runtime dependencies are installed there (`npm ci --omit=dev`), the release is checked
//   to load, RELEASE.json records what it is, and <dir>/<env>/current — the symlink a process
//   manager starts `node current/src/main.mjs` from — is switched to it atomically (rename).
//   The five newest releases are kept, so a rollback is one symlink switch away. When
//   STUDYBUDDY_RESTART_COMMAND is set it runs afterwards (e.g. `systemctl restart studybuddy`).
// - Not set: a dry run. The release is checked and what would be deployed is printed; nothing
//   is written and the log says so.
//
// Flightdeck itself publishes the web build and the asset bundle and applies the database
// migrations of the deploy stage; this script deploys only the API's code.

import { execFileSync, spawnSync } from "node:child_process";
import { cp, mkdir, readdir, readFile, rename, rm, symlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { parseArgs } from "node:util";
import { readMigrations } from "../src/migrations.mjs";

const ENVIRONMENTS = ["development", "staging", "production"];
const RELEASE_FILES = ["package.json", "package-lock.json", "src", "db", "api"];
const KEEP_RELEASES = 5;
const root = path.resolve(import.meta.dirname, "..");

function commitOf() {
  if (process.env.GIT_COMMIT) return process.env.GIT_COMMIT;
  try {
    return execFileSync("git", ["rev-parse", "HEAD"], { cwd: root, stdio: ["ignore", "pipe", "ignore"] })
      .toString()
      .trim();
  } catch {
    return null;
  }
}

const { values } = parseArgs({ options: { env: { type: "string" } } });
if (!ENVIRONMENTS.includes(values.env)) {
  console.error(`usage: deploy-api.mjs --env ${ENVIRONMENTS.join("|")}`);
  process.exit(2);
}
const env = values.env;
const pkg = JSON.parse(await readFile(path.join(root, "package.json"), "utf8"));
const commit = commitOf();
const migrations = await readMigrations(path.join(root, "db/migrations"));
const stamp = new Date().toISOString().replace(/[-:]/g, "").replace(/\..*/, "Z");
const releaseName = `${pkg.version}-${commit ? commit.slice(0, 12) : "nocommit"}-${stamp}`;
const release = {
  app: pkg.name,
  environment: env,
  version: pkg.version,
  commit,
  schema_version: migrations.at(-1)?.version ?? 0,
  files: RELEASE_FILES,
  start: "node src/main.mjs",
};

console.log(`deploy-api: StudyBuddy API ${pkg.version} (${commit ?? "no commit"}) → ${env}`);
console.log(
  `deploy-api: expects database schema version ${release.schema_version} (${migrations.length} migrations)`,
);

const target = process.env.STUDYBUDDY_DEPLOY_DIR?.trim();
if (!target) {
  console.log("deploy-api: STUDYBUDDY_DEPLOY_DIR is not set, so this is a DRY RUN: nothing was deployed.");
  console.log(
    `deploy-api: would install ${RELEASE_FILES.join(", ")} as releases/${releaseName} and switch ${env}/current to it`,
  );
  process.exit(0);
}

const envDir = path.resolve(target, env);
const releasesDir = path.join(envDir, "releases");
const releaseDir = path.join(releasesDir, releaseName);
await mkdir(releaseDir, { recursive: true });
try {
  for (const entry of RELEASE_FILES)
    await cp(path.join(root, entry), path.join(releaseDir, entry), { recursive: true });
  console.log(`deploy-api: copied the release to ${releaseDir}`);

  const install = spawnSync("npm", ["ci", "--omit=dev", "--ignore-scripts", "--no-audit", "--no-fund"], {
    cwd: releaseDir,
    stdio: "inherit",
  });
  if (install.status !== 0) throw new Error("npm ci --omit=dev failed in the release directory");

  // The release must load with only its runtime dependencies before anything points at it.
  const check = spawnSync(
    process.execPath,
    ["--input-type=module", "-e", "await import('./src/app.mjs'); await import('./src/store/postgres.mjs');"],
    { cwd: releaseDir, stdio: "inherit" },
  );
  if (check.status !== 0) throw new Error("the release does not load");

  await writeFile(
    path.join(releaseDir, "RELEASE.json"),
    `${JSON.stringify({ ...release, release: releaseName, deployed_at: new Date().toISOString() }, null, 2)}\n`,
  );
} catch (error) {
  await rm(releaseDir, { recursive: true, force: true });
  console.error(`deploy-api: ${error.message}; nothing was switched`);
  process.exit(1);
}

// Switch atomically: a new symlink beside the old one, renamed over it.
const current = path.join(envDir, "current");
const next = path.join(envDir, `.current-${process.pid}`);
await rm(next, { force: true });
await symlink(path.relative(envDir, releaseDir), next);
await rename(next, current);
console.log(`deploy-api: ${current} → releases/${releaseName}`);

const releases = (await readdir(releasesDir)).sort();
for (const old of releases.slice(0, Math.max(0, releases.length - KEEP_RELEASES))) {
  await rm(path.join(releasesDir, old), { recursive: true, force: true });
  console.log(`deploy-api: removed the old release ${old}`);
}

const restart = process.env.STUDYBUDDY_RESTART_COMMAND?.trim();
if (restart) {
  console.log(`deploy-api: restarting with: ${restart}`);
  const result = spawnSync("bash", ["-c", restart], {
    stdio: "inherit",
    env: { ...process.env, STUDYBUDDY_RELEASE_DIR: current },
  });
  if (result.status !== 0) {
    console.error(
      "deploy-api: the restart command failed; the new release is in place but may not be running",
    );
    process.exit(1);
  }
} else {
  console.log(
    "deploy-api: STUDYBUDDY_RESTART_COMMAND is not set; the running API (if any) picks the release up on its next start",
  );
}
console.log(`deploy-api: deployed ${releaseName} to ${env}`);
