#!/usr/bin/env node
// Builds the web app for release: every file of web/ except index.html gets a content-hashed,
// immutable name (app.js → app.3f2a9c1b.js), the references between files are rewritten to
// the new names, and manifest.json lists each file with its size and SHA-256.
//
//   node scripts/build-web.mjs --out dist/web [--src web] [--api-base https://api.example.org/]
//
// index.html keeps its name (it is the entry point, served with no-cache); everything it loads
// may be cached forever. The output directory is emptied first.

import { mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { parseArgs } from "node:util";
import { currentCommit, hashedName, manifestEntry, sha256 } from "./lib/hashing.mjs";

const root = path.resolve(import.meta.dirname, "..");

// References to other files of the app: JS imports, CSS url(), HTML src/href.
const JS_IMPORT = /(\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)(["'])(\.{1,2}\/[^"']+)\2/g;
const CSS_URL = /url\(\s*(["']?)(?!data:|https?:|\/\/|#)([^"')]+)\1\s*\)/g;
const HTML_REF = /\b(src|href)=(["'])(?!data:|https?:|\/\/|#|mailto:)([^"']+)\2/g;

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

function referencesOf(file, text) {
  const refs = [];
  const ext = path.posix.extname(file);
  const patterns = ext === ".js" ? [[JS_IMPORT, 3]] : ext === ".css" ? [[CSS_URL, 2]] : [[HTML_REF, 3]];
  for (const [pattern, group] of patterns) {
    for (const match of text.matchAll(pattern)) refs.push(match[group]);
  }
  return refs;
}

function resolveRef(from, ref) {
  const clean = ref.split(/[?#]/)[0];
  return path.posix.normalize(path.posix.join(path.posix.dirname(from), clean));
}

function relativeRef(from, to) {
  const rel = path.posix.relative(path.posix.dirname(from), to);
  return rel.startsWith(".") ? rel : `./${rel}`;
}

/**
 * Builds `src` into `out`. Returns the manifest. Throws when a file refers to a file that does
 * not exist or when imports go round in a circle (the hash of each must include the other's).
 */
export async function buildWeb({ src, out, apiBase = null }) {
  const files = await listFiles(src);
  if (!files.includes("index.html")) throw new Error(`${src} has no index.html`);
  const contents = new Map();
  for (const file of files) contents.set(file, await readFile(path.join(src, file)));
  const textual = (file) => [".js", ".css", ".html"].includes(path.posix.extname(file));

  const deps = new Map();
  for (const file of files) {
    if (!textual(file)) {
      deps.set(file, []);
      continue;
    }
    const refs = referencesOf(file, contents.get(file).toString("utf8")).map((ref) => resolveRef(file, ref));
    for (const ref of refs) {
      if (!contents.has(ref)) throw new Error(`${file} refers to ${ref}, which is not in ${src}`);
    }
    deps.set(file, [...new Set(refs)]);
  }

  // Name the files that others depend on first.
  const names = new Map();
  const outputs = new Map();
  const visiting = new Set();
  const visit = (file) => {
    if (names.has(file)) return;
    if (visiting.has(file)) throw new Error(`import cycle through ${file}`);
    visiting.add(file);
    deps.get(file).forEach(visit);
    let content = contents.get(file);
    if (textual(file)) {
      let text = content.toString("utf8");
      const ext = path.posix.extname(file);
      if (ext === ".js") text = text.replace(JS_IMPORT, (w, a, q, ref) => w.replace(ref, rename(file, ref)));
      if (ext === ".css") text = text.replace(CSS_URL, (w, q, ref) => w.replace(ref, rename(file, ref)));
      if (ext === ".html") {
        text = text.replace(HTML_REF, (w, attr, q, ref) => w.replace(ref, rename(file, ref)));
        if (apiBase !== null) {
          text = text.replace(
            /(<meta name="studybuddy-api-base" content=")[^"]*(")/,
            (w, head, tail) => `${head}${apiBase.replace(/[&"<>]/g, (c) => `&#${c.charCodeAt(0)};`)}${tail}`,
          );
        }
      }
      content = Buffer.from(text, "utf8");
    }
    names.set(file, file === "index.html" ? file : hashedName(file, sha256(content)));
    outputs.set(file, content);
    visiting.delete(file);
  };
  const rename = (from, ref) => {
    const clean = ref.split(/[?#]/)[0];
    let renamed = relativeRef(from, names.get(resolveRef(from, clean)));
    if (!clean.startsWith("./") && renamed.startsWith("./")) renamed = renamed.slice(2);
    return renamed + ref.slice(clean.length);
  };
  files.forEach(visit);

  await rm(out, { recursive: true, force: true });
  const manifest = {
    name: "studybuddy-web",
    version: JSON.parse(await readFile(path.join(root, "package.json"), "utf8")).version,
    commit: await currentCommit(root),
    entry: "index.html",
    files: {},
  };
  for (const file of files) {
    const target = path.join(out, names.get(file));
    await mkdir(path.dirname(target), { recursive: true });
    await writeFile(target, outputs.get(file));
    manifest.files[file] = manifestEntry(names.get(file), outputs.get(file));
  }
  await writeFile(path.join(out, "manifest.json"), `${JSON.stringify(manifest, null, 2)}\n`);
  return manifest;
}

if (process.argv[1] === import.meta.filename) {
  const { values } = parseArgs({
    options: {
      out: { type: "string" },
      src: { type: "string", default: path.join(root, "web") },
      "api-base": { type: "string" },
    },
  });
  if (!values.out) {
    console.error("usage: build-web.mjs --out DIR [--src web] [--api-base URL]");
    process.exit(2);
  }
  try {
    const manifest = await buildWeb({
      src: values.src,
      out: values.out,
      apiBase: values["api-base"] ?? null,
    });
    let total = 0;
    for (const [source, entry] of Object.entries(manifest.files)) {
      total += entry.size;
      console.log(`${source.padEnd(14)} → ${entry.file.padEnd(24)} ${String(entry.size).padStart(7)} B`);
    }
    console.log(`build-web: ${Object.keys(manifest.files).length} files, ${total} bytes in ${values.out}`);
  } catch (error) {
    console.error(`build-web: ${error.message}`);
    process.exit(1);
  }
}
