#!/usr/bin/env node
// Runs a test suite with Node's built-in test runner.
//
//   node scripts/run-tests.mjs unit|integration [--reporter=junit --output=reports/unit.xml]
//   node scripts/run-tests.mjs ui --base-url URL [--api mock|live]
//
// The readable report always goes to the terminal; `--reporter` and `--output` add a second
// report in a file (junit, tap, spec or dot), for CI to keep as an artifact. The integration
// suite needs TEST_DATABASE_URL: a PostgreSQL database it may wipe. The ui suite drives
// chromium against the web app at --base-url and always writes reports/ui/junit.xml.

import { spawnSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    reporter: { type: "string" },
    output: { type: "string" },
    "base-url": { type: "string" },
    api: { type: "string", default: "mock" },
  },
});
const suite = positionals[0];
if (!["unit", "integration", "ui"].includes(suite) || positionals.length > 1) {
  console.error("usage: run-tests.mjs unit|integration|ui [--reporter=junit --output=FILE] [--base-url URL]");
  process.exit(2);
}
if (suite === "integration" && !process.env.TEST_DATABASE_URL) {
  console.error(
    "run-tests: the integration tests need TEST_DATABASE_URL, a PostgreSQL database they may wipe,\n" +
      "e.g. TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/studybuddy_test npm run test:integration",
  );
  process.exit(2);
}
const env = { ...process.env };
if (suite === "ui") {
  if (!values["base-url"]) {
    console.error("run-tests: the ui tests need --base-url, the web app to test");
    process.exit(2);
  }
  env.UI_BASE_URL = values["base-url"];
  env.UI_API = values.api;
  values.reporter ??= "junit";
  values.output ??= "reports/ui/junit.xml";
}
if (Boolean(values.reporter) !== Boolean(values.output)) {
  console.error("run-tests: give --reporter and --output together");
  process.exit(2);
}

const root = path.resolve(import.meta.dirname, "..");
const args = ["--test", "--test-reporter=spec", "--test-reporter-destination=stdout"];
if (values.reporter) {
  const output = path.resolve(values.output);
  mkdirSync(path.dirname(output), { recursive: true });
  args.push(`--test-reporter=${values.reporter}`, `--test-reporter-destination=${output}`);
}
// The integration tests share one database and the ui tests one browser: one file at a time.
if (suite !== "unit") args.push("--test-concurrency=1");
args.push(path.join("test", suite) + path.sep);

const result = spawnSync(process.execPath, args, { cwd: root, stdio: "inherit", env });
process.exit(result.status ?? 1);
