import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { checkLockfile, inRange } from "../../scripts/audit-deps.mjs";

const policy = JSON.parse(readFileSync(new URL("../../security/audit-policy.json", import.meta.url), "utf8"));
const integrity = "sha512-AAAA";

test("version ranges use npm's syntax", () => {
  assert.ok(inRange("7.0.4", "<6.0.6 || >=7.0.0 <7.0.5"));
  assert.ok(!inRange("7.0.5", "<6.0.6 || >=7.0.0 <7.0.5"));
  assert.ok(inRange("6.0.5", "<6.0.6 || >=7.0.0 <7.0.5"));
  assert.ok(inRange("1.0.0-beta.1", "<1.0.0"));
  assert.ok(inRange("2.3.4", "=2.3.4"));
  assert.ok(!inRange("8.23.1", policy.advisories.find((a) => a.package === "pg").vulnerable));
});

test("the committed lock file passes", () => {
  const lock = JSON.parse(readFileSync(new URL("../../package-lock.json", import.meta.url), "utf8"));
  assert.deepEqual(checkLockfile(lock, { policy }).problems, []);
});

test("a vulnerable version at or above the level fails, below it is only listed", () => {
  const lock = {
    lockfileVersion: 3,
    packages: {
      "": {},
      "node_modules/cross-spawn": { version: "7.0.3", integrity },
      "node_modules/pg": { version: "8.23.1", integrity },
    },
  };
  const high = checkLockfile(lock, { policy, level: "high" });
  assert.equal(high.problems.length, 1);
  assert.match(high.problems[0], /cross-spawn@7\.0\.3: high: .*GHSA-3xgq-45jj-v275/);
  const critical = checkLockfile(lock, { policy, level: "critical" });
  assert.deepEqual(critical.problems, []);
  assert.equal(critical.advisoriesFound.length, 1);
});

test("sources outside the registry, missing hashes, install scripts and drift are problems", () => {
  const lock = {
    lockfileVersion: 3,
    packages: {
      "": {},
      "node_modules/a": { version: "1.0.0", resolved: "git+ssh://git@host/a.git#abc", integrity },
      "node_modules/b": { version: "1.0.0" },
      "node_modules/c": { version: "1.0.0", integrity, hasInstallScript: true },
      "node_modules/d": { version: "1.0.0", integrity },
      "node_modules/e": { version: "1.0.0", integrity, optional: true },
    },
  };
  const installed = new Map([
    ["node_modules/a", "1.0.0"],
    ["node_modules/b", "1.0.0"],
    ["node_modules/c", "1.0.0"],
    ["node_modules/d", "1.0.1"],
  ]);
  const { problems } = checkLockfile(lock, { installed, policy });
  assert.deepEqual(
    problems.map((p) => p.split(":")[0]),
    ["node_modules/a", "node_modules/b", "node_modules/c", "node_modules/d"],
  );
  assert.match(problems[3], /1\.0\.1 is installed, the lock file says 1\.0\.0/);
  assert.equal(checkLockfile({ lockfileVersion: 1, packages: {} }, { policy }).problems.length, 1);
});
