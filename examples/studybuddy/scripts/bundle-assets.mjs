#!/usr/bin/env node
// Bundles the app's resources (translations, images, fonts) for release.
//
//   node scripts/bundle-assets.mjs --out dist/assets [--src assets]
//
// Each file is checked (translations parse, every locale has exactly the English keys and
// placeholders; SVGs are SVGs without scripts), translations are minified, and every file gets
// a content-hashed, immutable name (i18n/de.json → i18n/de.1a2b3c4d.json). manifest.json maps
// each source name to its file, size and SHA-256, and lists the locales.

import { mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { parseArgs } from "node:util";
import { currentCommit, hashedName, manifestEntry, sha256 } from "./lib/hashing.mjs";

const root = path.resolve(import.meta.dirname, "..");
const KINDS = {
  ".json": "translation",
  ".svg": "image",
  ".png": "image",
  ".webp": "image",
  ".woff2": "font",
  ".woff": "font",
};
const PLACEHOLDER = /\{(\w+)\}/g;

async function listFiles(dir, prefix = "") {
  const out = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    if (entry.name.startsWith(".")) continue;
    const relative = prefix ? `${prefix}/${entry.name}` : entry.name;
    if (entry.isDirectory()) out.push(...(await listFiles(path.join(dir, entry.name), relative)));
    else out.push(relative);
  }
  return out.sort();
}

const placeholders = (text) =>
  [...text.matchAll(PLACEHOLDER)]
    .map((m) => m[1])
    .sort()
    .join(",");

/** Checks the translations against the reference locale; returns the problems found. */
export function checkTranslations(locales, reference = "en") {
  const problems = [];
  const base = locales[reference];
  if (!base) return [`there is no i18n/${reference}.json to compare the other locales with`];
  for (const [locale, messages] of Object.entries(locales)) {
    for (const [key, value] of Object.entries(messages)) {
      if (typeof value !== "string") problems.push(`i18n/${locale}.json: ${key} is not a string`);
    }
    if (locale === reference) continue;
    for (const key of Object.keys(base)) {
      if (!(key in messages)) problems.push(`i18n/${locale}.json: missing ${key}`);
      else if (placeholders(messages[key]) !== placeholders(base[key])) {
        problems.push(
          `i18n/${locale}.json: ${key} has placeholders {${placeholders(messages[key])}}, not {${placeholders(base[key])}}`,
        );
      }
    }
    for (const key of Object.keys(messages)) {
      if (!(key in base)) problems.push(`i18n/${locale}.json: ${key} is not in i18n/${reference}.json`);
    }
  }
  return problems;
}

function checkSvg(file, text) {
  const problems = [];
  if (!/^\s*(<\?xml[^>]*>\s*)?<svg[\s>]/.test(text)) problems.push(`${file}: does not start with <svg`);
  if (!/xmlns="http:\/\/www\.w3\.org\/2000\/svg"/.test(text)) problems.push(`${file}: has no SVG xmlns`);
  if (/<script\b|\son[a-z]+\s*=/i.test(text)) problems.push(`${file}: has a script or an event handler`);
  return problems;
}

export async function bundleAssets({ src, out }) {
  const files = await listFiles(src);
  const problems = [];
  const locales = {};
  const outputs = [];
  for (const file of files) {
    const ext = path.posix.extname(file);
    const kind = KINDS[ext];
    if (!kind) {
      problems.push(`${file}: not an asset kind this bundler knows (${Object.keys(KINDS).join(" ")})`);
      continue;
    }
    let content = await readFile(path.join(src, file));
    if (kind === "translation") {
      const match = /^i18n\/([a-z]{2}(?:-[A-Z]{2})?)\.json$/.exec(file);
      if (!match) {
        problems.push(`${file}: translations live in i18n/<locale>.json`);
        continue;
      }
      try {
        const messages = JSON.parse(content.toString("utf8"));
        if (messages === null || typeof messages !== "object" || Array.isArray(messages)) {
          throw new Error("is not a JSON object");
        }
        locales[match[1]] = messages;
        content = Buffer.from(JSON.stringify(messages), "utf8");
      } catch (error) {
        problems.push(`${file}: ${error.message}`);
        continue;
      }
    }
    if (ext === ".svg") problems.push(...checkSvg(file, content.toString("utf8")));
    outputs.push({ file, kind, content });
  }
  problems.push(...checkTranslations(locales));
  if (problems.length) throw Object.assign(new Error("the assets have problems"), { problems });

  await rm(out, { recursive: true, force: true });
  const manifest = {
    name: "studybuddy-assets",
    version: JSON.parse(await readFile(path.join(root, "package.json"), "utf8")).version,
    commit: await currentCommit(root),
    locales: Object.keys(locales).sort(),
    files: {},
  };
  for (const { file, kind, content } of outputs) {
    const name = hashedName(file, sha256(content));
    await mkdir(path.dirname(path.join(out, name)), { recursive: true });
    await writeFile(path.join(out, name), content);
    manifest.files[file] = { ...manifestEntry(name, content), kind };
  }
  await writeFile(path.join(out, "manifest.json"), `${JSON.stringify(manifest, null, 2)}\n`);
  return manifest;
}

if (process.argv[1] === import.meta.filename) {
  const { values } = parseArgs({
    options: { out: { type: "string" }, src: { type: "string", default: path.join(root, "assets") } },
  });
  if (!values.out) {
    console.error("usage: bundle-assets.mjs --out DIR [--src assets]");
    process.exit(2);
  }
  try {
    const manifest = await bundleAssets({ src: values.src, out: values.out });
    let total = 0;
    for (const [source, entry] of Object.entries(manifest.files)) {
      total += entry.size;
      console.log(
        `${source.padEnd(18)} → ${entry.file.padEnd(28)} ${String(entry.size).padStart(7)} B  ${entry.kind}`,
      );
    }
    console.log(
      `bundle-assets: ${Object.keys(manifest.files).length} files (${manifest.locales.join(", ")}), ${total} bytes in ${values.out}`,
    );
  } catch (error) {
    for (const problem of error.problems ?? [error.message]) console.error(`bundle-assets: ${problem}`);
    process.exit(1);
  }
}
