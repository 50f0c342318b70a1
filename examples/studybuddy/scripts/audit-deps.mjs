#!/usr/bin/env node
// The dependency audit: `npm audit`, and what can be checked without it.
//
//   node scripts/audit-deps.mjs [--audit-level=high] [--require-advisories]
//
// 1. `npm audit` asks the registry's advisory service about every installed package and fails
//    on a vulnerability at or above --audit-level (low, moderate, high, critical).
// 2. When that service cannot be reached (a registry mirror that answers only GET, as on
//    Flightdeck's own runners, or no network) the log says so plainly, and these checks run
//    instead:
//    - the lock file pins every package to a version and a sha512 integrity hash, from the
//      registry (no git, http or file sources);
//    - node_modules holds exactly the locked versions (run after `npm ci`);
//    - no package runs install scripts unless security/audit-policy.json allows it;
//    - no installed version is in a range of security/audit-policy.json's advisories (a
//      hand-kept list: it does not know about new advisories the way the service does).
//    With --require-advisories an unreachable service fails the audit instead.

import { spawnSync } from "node:child_process";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { parseArgs } from "node:util";

export const SEVERITIES = ["info", "low", "moderate", "high", "critical"];

function parseVersion(text) {
  const match = /^v?(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?/.exec(text.trim());
  if (!match) throw new Error(`not a version: ${text}`);
  return { parts: match.slice(1, 4).map(Number), pre: match[4] ?? null };
}

function compare(a, b) {
  for (let i = 0; i < 3; i += 1) if (a.parts[i] !== b.parts[i]) return a.parts[i] - b.parts[i];
  if (a.pre === b.pre) return 0;
  if (a.pre === null) return 1;
  if (b.pre === null) return -1;
  return a.pre < b.pre ? -1 : 1;
}

/** True when `version` is in `range` (comparators joined by spaces, alternatives by ||). */
export function inRange(version, range) {
  const v = parseVersion(version);
  return range.split("||").some((alternative) =>
    alternative
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .every((comparator) => {
        const match = /^(<=|>=|<|>|=)?(.+)$/.exec(comparator);
        const c = compare(v, parseVersion(match[2]));
        return { "<": c < 0, "<=": c <= 0, ">": c > 0, ">=": c >= 0, "=": c === 0, undefined: c === 0 }[
          match[1]
        ];
      }),
  );
}

/** Checks a package-lock.json (v2/v3) and the installed packages; returns the problems. */
export function checkLockfile(
  lock,
  { installed = null, policy = { allow_install_scripts: [], advisories: [] }, level = "high" } = {},
) {
  const problems = [];
  const advisoriesFound = [];
  if (!(lock.lockfileVersion >= 2))
    problems.push("package-lock.json must be lockfileVersion 2 or 3 (npm 7 or newer)");
  const threshold = SEVERITIES.indexOf(level);
  for (const [location, entry] of Object.entries(lock.packages ?? {})) {
    if (location === "" || entry.link) continue;
    const name = entry.name ?? location.slice(location.lastIndexOf("node_modules/") + "node_modules/".length);
    if (!entry.version) problems.push(`${location}: no version in the lock file`);
    if (!/^sha512-/.test(entry.integrity ?? ""))
      problems.push(`${location}: no sha512 integrity hash in the lock file`);
    if (entry.resolved && !/^https:\/\/[^/]+\/.+\.tgz$/.test(entry.resolved)) {
      problems.push(`${location}: comes from ${entry.resolved}, not from the registry`);
    }
    if (entry.hasInstallScript && !policy.allow_install_scripts.includes(name)) {
      problems.push(
        `${location}: runs install scripts; allow it in security/audit-policy.json or find another package`,
      );
    }
    if (installed) {
      const actual = installed.get(location);
      if (actual === undefined && !entry.optional)
        problems.push(`${location}: locked but not installed (run npm ci)`);
      else if (actual !== undefined && actual !== entry.version) {
        problems.push(`${location}: ${actual} is installed, the lock file says ${entry.version}`);
      }
    }
    for (const advisory of policy.advisories) {
      if (advisory.package === name && entry.version && inRange(entry.version, advisory.vulnerable)) {
        advisoriesFound.push({ ...advisory, location, version: entry.version });
        if (SEVERITIES.indexOf(advisory.severity) >= threshold) {
          problems.push(
            `${location}@${entry.version}: ${advisory.severity}: ${advisory.title} (${advisory.id})`,
          );
        }
      }
    }
  }
  return { problems, advisoriesFound };
}

async function installedVersions(root, lock) {
  const installed = new Map();
  for (const location of Object.keys(lock.packages ?? {})) {
    if (location === "") continue;
    try {
      const pkg = JSON.parse(await readFile(path.join(root, location, "package.json"), "utf8"));
      installed.set(location, pkg.version);
    } catch {
      // Not installed: reported by checkLockfile.
    }
  }
  return installed;
}

/** Runs `npm audit --json`; returns the parsed report, or `{ unreachable: reason }`. */
function npmAudit(root, level) {
  const result = spawnSync("npm", ["audit", "--json", `--audit-level=${level}`], {
    cwd: root,
    encoding: "utf8",
    timeout: 120_000,
  });
  let report;
  try {
    report = JSON.parse(result.stdout);
  } catch {
    return {
      unreachable: (result.stderr || result.error?.message || "npm audit printed no report")
        .trim()
        .split("\n")
        .at(-1),
    };
  }
  if (report.metadata?.vulnerabilities) return report;
  return { unreachable: report.message ?? report.error?.summary ?? "the audit service returned no report" };
}

if (process.argv[1] === import.meta.filename) {
  const { values } = parseArgs({
    options: {
      "audit-level": { type: "string", default: "high" },
      "require-advisories": { type: "boolean", default: false },
    },
  });
  const level = values["audit-level"];
  if (!SEVERITIES.includes(level) || level === "info") {
    console.error("audit-deps: --audit-level must be low, moderate, high or critical");
    process.exit(2);
  }
  const root = path.resolve(import.meta.dirname, "..");
  const report = npmAudit(root, level);
  if (!report.unreachable) {
    const counts = report.metadata.vulnerabilities;
    console.log(`audit-deps: npm audit: ${SEVERITIES.map((s) => `${counts[s] ?? 0} ${s}`).join(", ")}`);
    const failing = Object.values(report.vulnerabilities ?? {}).filter(
      (v) => SEVERITIES.indexOf(v.severity) >= SEVERITIES.indexOf(level),
    );
    for (const v of failing) {
      const via = v.via.map((x) => (typeof x === "string" ? x : `${x.title} (${x.url})`)).join("; ");
      console.error(
        `audit-deps: ${v.name}@${v.range}: ${v.severity}: ${via}${v.fixAvailable ? " — a fix is available" : ""}`,
      );
    }
    process.exit(failing.length ? 1 : 0);
  }

  console.log(`audit-deps: npm audit could not reach the advisory service: ${report.unreachable}`);
  console.log("audit-deps: KNOWN VULNERABILITIES WERE NOT CHECKED against the live advisory database.");
  if (values["require-advisories"]) {
    console.error("audit-deps: --require-advisories: failing because the advisory service is unreachable");
    process.exit(1);
  }
  console.log(
    "audit-deps: checking the lock file, the installed packages, install scripts and the hand-kept advisories instead",
  );
  const lock = JSON.parse(await readFile(path.join(root, "package-lock.json"), "utf8"));
  const policy = JSON.parse(await readFile(path.join(root, "security/audit-policy.json"), "utf8"));
  const { problems, advisoriesFound } = checkLockfile(lock, {
    installed: await installedVersions(root, lock),
    policy,
    level,
  });
  const packages = Object.keys(lock.packages).length - 1;
  for (const a of advisoriesFound)
    console.log(`audit-deps: advisory ${a.id} (${a.severity}) matches ${a.location}@${a.version}`);
  for (const problem of problems) console.error(`audit-deps: ${problem}`);
  console.log(
    `audit-deps: ${packages} locked packages, ${policy.advisories.length} hand-kept advisories, ${problems.length} problem(s)`,
  );
  process.exit(problems.length ? 1 : 0);
}
