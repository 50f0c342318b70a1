#!/usr/bin/env node
// Installs the repository's git hooks (hooks/): sets core.hooksPath to hooks, so the pre-push
// hook runs lint and the unit tests before every push. Run as `npm run hooks`.
//
// It refuses when this directory is not the root of its own git repository (for instance the
// copy inside Flightdeck's examples/), because core.hooksPath would then change the enclosing
// repository's hooks.

import { execFileSync } from "node:child_process";
import { chmodSync, realpathSync } from "node:fs";
import path from "node:path";

const root = path.resolve(import.meta.dirname, "..");
const git = (...args) => execFileSync("git", args, { cwd: root, encoding: "utf8" }).trim();

let top;
try {
  top = git("rev-parse", "--show-toplevel");
} catch {
  console.error("hooks: this is not a git repository; run `git init` first");
  process.exit(1);
}
if (realpathSync(top) !== realpathSync(root)) {
  console.error(`hooks: ${root} is inside the git repository ${top}, not the root of its own;`);
  console.error(
    "hooks: not changing that repository's hooks. Copy StudyBuddy into a repository of its own first.",
  );
  process.exit(1);
}
chmodSync(path.join(root, "hooks", "pre-push"), 0o755);
git("config", "core.hooksPath", "hooks");
console.log("hooks: installed; git now runs hooks/pre-push (npm run lint, npm test) before each push");
