// The secrets below are made up and assembled at run time, so this file itself has none.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { test } from "node:test";
import { entropy, isAllowed, parseAllowlist, scanText } from "../../scripts/scan-secrets.mjs";

const join = (...parts) => parts.join("");
const AWS_ID = join("AKIA", "Z7Q4M2XW", "P6L3K5RT");
const GITHUB = join("ghp_", "a1B2c3D4e5F6g7H8i9J0", "k1L2m3N4o5P6q7R8s9T0");
const SECRET = join("Zx9qL2mB", "7vK4tR8wN1pY6sD3");

const rules = (text) => scanText(text).map((f) => f.rule);

test("keys and tokens are found with their line and column", () => {
  const findings = scanText(`first line\nconst id = "${AWS_ID}";\n`);
  assert.equal(findings.length, 1);
  assert.deepEqual([findings[0].rule, findings[0].line, findings[0].column], ["aws-access-key-id", 2, 13]);
  assert.deepEqual(rules(`token: ${GITHUB}`), ["github-token"]);
  assert.deepEqual(rules(join("-----BEGIN OPENSSH ", "PRIVATE KEY-----")), ["private-key"]);
});

test("passwords and high-entropy secrets assigned in code are found", () => {
  assert.deepEqual(rules(`db_password = "${join("Tr0ub4", "dor&3x")}"`), ["password-assignment"]);
  assert.deepEqual(rules(`const apiKey = '${SECRET}';`), ["generic-secret"]);
  assert.deepEqual(rules(`url: "postgres://app:${join("Hq7L", "m2Xp9")}@db:5432/app"`), ["url-credentials"]);
  assert.deepEqual(rules(`export DB_PASSWORD=${join("Kq8v", "Lm3Zt9")}`), ["env-assignment"]);
});

test("placeholders, low-entropy values and references are not secrets", () => {
  for (const line of [
    'password = "changeme123"',
    'password: "${DB_PASSWORD}"',
    'api_key = "your-api-key-here-please"',
    'token = "aaaaaaaaaaaaaaaaaaaa"',
    "const token = process.env.TOKEN;",
    "secrets: [ANDROID_KEYSTORE_PASSWORD]",
    "TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres",
    `const id = "${AWS_ID}"; // scan-secrets: allow`,
  ]) {
    assert.deepEqual(rules(line), [], line);
  }
});

test("entropy separates random strings from words", () => {
  assert.ok(entropy(SECRET) > 3.5);
  assert.ok(entropy("passwordpassword") < 3);
});

test("the allow-list takes globs, lines and fingerprints", () => {
  const [finding] = scanText(`id = "${AWS_ID}"`);
  const allow = parseAllowlist(
    `# comment\ndocs/**\nsrc/a.js:3\nfingerprint:${finding.fingerprint}  # a test key\n`,
  );
  assert.ok(isAllowed(allow, "docs/deep/x.md", { ...finding, fingerprint: "0" }));
  assert.ok(isAllowed(allow, "src/a.js", { ...finding, line: 3, fingerprint: "0" }));
  assert.ok(!isAllowed(allow, "src/a.js", { ...finding, line: 4, fingerprint: "0" }));
  assert.ok(isAllowed(allow, "anywhere.txt", finding));
});

test("the command exits 1 with file:line on a finding, 0 on a clean tree", async () => {
  const dir = await mkdtemp(path.join(tmpdir(), "studybuddy-secrets-"));
  const script = new URL("../../scripts/scan-secrets.mjs", import.meta.url).pathname;
  try {
    await writeFile(path.join(dir, "clean.js"), "export const x = 1;\n");
    const clean = spawnSync(process.execPath, [script, "--root", dir], { encoding: "utf8" });
    assert.equal(clean.status, 0, clean.stderr);
    await writeFile(path.join(dir, "config.js"), `\nexport const key = "${AWS_ID}";\n`);
    const dirty = spawnSync(process.execPath, [script, "--root", dir], { encoding: "utf8" });
    assert.equal(dirty.status, 1);
    assert.match(dirty.stderr, /^config\.js:2:\d+: aws-access-key-id/m);
    assert.doesNotMatch(dirty.stderr, new RegExp(AWS_ID));
    await writeFile(path.join(dir, ".secrets-allowlist"), "config.js # a documented example key\n");
    const allowed = spawnSync(process.execPath, [script, "--root", dir], { encoding: "utf8" });
    assert.equal(allowed.status, 0, allowed.stderr);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
