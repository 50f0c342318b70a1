#!/usr/bin/env node
// Looks for secrets committed by mistake: private keys, cloud and service tokens, credentials
// in URLs, and high-entropy literals assigned to names like password, secret or api_key.
//
//   node scripts/scan-secrets.mjs [--root DIR] [--allowlist FILE]
//
// In a git checkout it scans the files git tracks plus untracked files that are not ignored;
// elsewhere (an exported tree) every file except node_modules, dist, reports, build and .git.
// Each finding is printed as file:line:column with the secret masked; the exit code is 1 when
// there is one. A finding that is not a secret is allowed by a line in the allow-list
// (.secrets-allowlist): a path glob, `glob:LINE`, or the finding's `fingerprint:…`, or by a
// `scan-secrets: allow` comment on its line.

import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { readdir, readFile, stat } from "node:fs/promises";
import path from "node:path";
import { parseArgs } from "node:util";

const MAX_BYTES = 2 * 1024 * 1024;
const SKIPPED_DIRS = new Set([".git", "node_modules", "dist", "reports", "build"]);
const INLINE_ALLOW = "scan-secrets: allow";

/** Bits of entropy per character (Shannon). Random base64 is near 6, English words near 3. */
export function entropy(text) {
  const counts = new Map();
  for (const ch of text) counts.set(ch, (counts.get(ch) ?? 0) + 1);
  let bits = 0;
  for (const n of counts.values()) {
    const p = n / text.length;
    bits -= p * Math.log2(p);
  }
  return bits;
}

const PLACEHOLDER =
  /\$\{|\{\{|<[^>]*>|process\.env|example|changeme|change_me|placeholder|dummy|redacted|your[_-]|xxxx|\*{3}|\.\.\.|^(.)\1*$/i;
const isPlaceholder = (value) => PLACEHOLDER.test(value);

const NAME = "[A-Za-z0-9_.-]*";
export const RULES = [
  {
    id: "private-key",
    description: "a private key",
    pattern: /-----BEGIN ((?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?)-----/g,
  },
  {
    id: "aws-access-key-id",
    description: "an AWS access key id",
    pattern: /\b((?:AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16})\b/g,
  },
  {
    id: "aws-secret-access-key",
    description: "an AWS secret access key",
    pattern: /aws_?secret_?access_?key["']?\s*[:=]\s*["']?([A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])/gi,
    keep: (secret) => !isPlaceholder(secret),
  },
  {
    id: "github-token",
    description: "a GitHub token",
    pattern: /\b(gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b/g,
  },
  { id: "slack-token", description: "a Slack token", pattern: /\b(xox[baprs]-[A-Za-z0-9-]{10,})\b/g },
  { id: "stripe-live-key", description: "a live Stripe key", pattern: /\b([sr]k_live_[A-Za-z0-9]{20,})\b/g },
  {
    id: "google-api-key",
    description: "a Google API key",
    pattern: /\b(AIza[0-9A-Za-z_-]{35})(?![0-9A-Za-z_-])/g,
  },
  { id: "npm-token", description: "an npm access token", pattern: /\b(npm_[A-Za-z0-9]{36})\b/g },
  {
    id: "url-credentials",
    description: "a password in a URL",
    pattern: /\b[a-z][a-z0-9+.-]*:\/\/[^\s:@/'"`]+:([^\s@/'"`]{6,})@/gi,
    keep: (secret) => !isPlaceholder(secret) && entropy(secret) >= 2.5,
  },
  {
    id: "password-assignment",
    description: "a password in the code",
    pattern: new RegExp(
      `\\b${NAME}(?:password|passwd|pwd)${NAME}["']?\\s*(?::=|=>|[:=])\\s*(["'\`])([^"'\`\\s]{8,})\\1`,
      "gi",
    ),
    group: 2,
    keep: (secret) => !isPlaceholder(secret) && entropy(secret) >= 2.5,
  },
  {
    id: "env-assignment",
    description: "a secret in an environment file",
    pattern:
      /^\s*(?:export\s+)?[A-Z0-9_]*(?:PASSWORD|PASSWD|SECRET|TOKEN|API_KEY|ACCESS_KEY)[A-Z0-9_]*\s*=\s*([^\s"'`#$]{8,})\s*$/g,
    keep: (secret) => !isPlaceholder(secret) && entropy(secret) >= 3,
  },
  {
    id: "generic-secret",
    description: "a high-entropy secret in the code",
    pattern: new RegExp(
      `\\b${NAME}(?:secret|token|api[_-]?key|access[_-]?key|private[_-]?key|client[_-]?secret|auth)${NAME}["']?\\s*(?::=|=>|[:=])\\s*(["'\`])([^"'\`\\s]{16,})\\1`,
      "gi",
    ),
    group: 2,
    keep: (secret) => !isPlaceholder(secret) && entropy(secret) >= 3.5,
  },
];

function fingerprint(rule, secret) {
  return createHash("sha256").update(`${rule}:${secret}`).digest("hex").slice(0, 16);
}

function mask(secret) {
  return secret.length <= 8
    ? "*".repeat(secret.length)
    : `${secret.slice(0, 4)}${"*".repeat(Math.min(secret.length - 4, 24))}`;
}

/** Scans one file's text; returns `[{ line, column, rule, description, secret, fingerprint }]`. */
export function scanText(text) {
  const findings = [];
  const lines = text.split("\n");
  lines.forEach((lineText, index) => {
    if (lineText.includes(INLINE_ALLOW) || lineText.length > 10_000) return;
    for (const rule of RULES) {
      rule.pattern.lastIndex = 0;
      for (const match of lineText.matchAll(rule.pattern)) {
        const secret = match[rule.group ?? 1];
        if (rule.keep && !rule.keep(secret)) continue;
        findings.push({
          line: index + 1,
          column: match.index + match[0].indexOf(secret) + 1,
          rule: rule.id,
          description: rule.description,
          secret,
          fingerprint: fingerprint(rule.id, secret),
        });
      }
    }
  });
  return findings;
}

function globToRegExp(glob) {
  let out = "";
  for (let i = 0; i < glob.length; i += 1) {
    const ch = glob[i];
    if (ch === "*" && glob[i + 1] === "*") {
      out += ".*";
      i += glob[i + 2] === "/" ? 2 : 1;
    } else if (ch === "*") out += "[^/]*";
    else if (ch === "?") out += "[^/]";
    else out += ch.replace(/[.+^${}()|[\]\\]/g, "\\$&");
  }
  return new RegExp(`^${out}$`);
}

/** Parses the allow-list: path globs, `glob:LINE` and `fingerprint:HEX`, one a line, # comments. */
export function parseAllowlist(text) {
  const entries = [];
  for (const raw of text.split("\n")) {
    const entry = raw.replace(/(^|\s)#.*$/, "").trim();
    if (!entry) continue;
    const fp = /^fingerprint:([0-9a-f]{16})$/.exec(entry);
    if (fp) {
      entries.push({ fingerprint: fp[1] });
      continue;
    }
    const lined = /^(.+):(\d+)$/.exec(entry);
    entries.push(
      lined ? { path: globToRegExp(lined[1]), line: Number(lined[2]) } : { path: globToRegExp(entry) },
    );
  }
  return entries;
}

export function isAllowed(allowlist, file, finding) {
  return allowlist.some(
    (entry) =>
      entry.fingerprint === finding.fingerprint ||
      (entry.path?.test(file) && (entry.line === undefined || entry.line === finding.line)),
  );
}

async function walk(root, dir = "") {
  const out = [];
  for (const entry of await readdir(path.join(root, dir), { withFileTypes: true })) {
    const relative = dir ? `${dir}/${entry.name}` : entry.name;
    if (entry.isDirectory()) {
      if (!SKIPPED_DIRS.has(entry.name)) out.push(...(await walk(root, relative)));
    } else if (entry.isFile()) out.push(relative);
  }
  return out;
}

/** The files to scan under `root`, relative to it, and how they were found. */
export async function filesToScan(root) {
  try {
    const listed = execFileSync("git", ["ls-files", "-z", "--cached", "--others", "--exclude-standard"], {
      cwd: root,
      stdio: ["ignore", "pipe", "ignore"],
      maxBuffer: 64 * 1024 * 1024,
    })
      .toString("utf8")
      .split("\0")
      .filter(Boolean);
    return { source: "git (tracked and untracked, not ignored)", files: [...new Set(listed)].sort() };
  } catch {
    return { source: "working tree", files: (await walk(root)).sort() };
  }
}

/** Scans `root`; returns the findings that the allow-list does not allow, and counts. */
export async function scanTree(root, allowlist) {
  const { source, files } = await filesToScan(root);
  const findings = [];
  let scanned = 0;
  let allowed = 0;
  for (const file of files) {
    const full = path.join(root, file);
    const info = await stat(full).catch(() => null);
    if (!info?.isFile() || info.size > MAX_BYTES) continue;
    const content = await readFile(full);
    if (content.subarray(0, 8192).includes(0)) continue; // binary
    scanned += 1;
    for (const finding of scanText(content.toString("utf8"))) {
      if (isAllowed(allowlist, file, finding)) allowed += 1;
      else findings.push({ file, ...finding });
    }
  }
  return { source, scanned, allowed, findings };
}

if (process.argv[1] === import.meta.filename) {
  const { values } = parseArgs({
    options: { root: { type: "string", default: "." }, allowlist: { type: "string" } },
  });
  const root = path.resolve(values.root);
  const allowlistFile = values.allowlist ?? path.join(root, ".secrets-allowlist");
  const allowlistText = await readFile(allowlistFile, "utf8").catch((error) => {
    if (values.allowlist || error.code !== "ENOENT") {
      console.error(`scan-secrets: cannot read ${allowlistFile}: ${error.message}`);
      process.exit(2);
    }
    return "";
  });
  const { source, scanned, allowed, findings } = await scanTree(root, parseAllowlist(allowlistText));
  for (const f of findings) {
    console.error(
      `${f.file}:${f.line}:${f.column}: ${f.rule}: ${f.description} (${mask(f.secret)}) fingerprint:${f.fingerprint}`,
    );
  }
  const summary = `scan-secrets: ${scanned} files from the ${source}, ${findings.length} finding(s), ${allowed} allowed by the allow-list`;
  if (findings.length) {
    console.error(summary);
    console.error(
      "Remove the secret and rotate it, or, if it is not one, add its fingerprint to .secrets-allowlist.",
    );
    process.exit(1);
  }
  console.log(summary);
}
