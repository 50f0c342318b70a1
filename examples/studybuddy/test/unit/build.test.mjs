import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtemp, mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";
import { buildWeb } from "../../scripts/build-web.mjs";
import { bundleAssets, checkTranslations } from "../../scripts/bundle-assets.mjs";

const repo = new URL("../..", import.meta.url).pathname;
const sha256 = (buffer) => createHash("sha256").update(buffer).digest("hex");
let scratch;

before(async () => {
  scratch = await mkdtemp(path.join(tmpdir(), "studybuddy-build-"));
});
after(() => rm(scratch, { recursive: true, force: true }));

describe("build-web", () => {
  test("gives every file but index.html a content-hashed name and rewrites the references", async () => {
    const out = path.join(scratch, "web");
    const manifest = await buildWeb({ src: path.join(repo, "web"), out, apiBase: "https://api.example/" });
    const files = await readdir(out);
    assert.ok(files.includes("index.html") && files.includes("manifest.json"));
    for (const [source, entry] of Object.entries(manifest.files)) {
      const content = await readFile(path.join(out, entry.file));
      assert.equal(entry.sha256, sha256(content), source);
      assert.equal(entry.size, content.length, source);
      if (source !== "index.html") assert.equal(entry.file.split(".").at(-2), entry.sha256.slice(0, 8));
    }
    const html = await readFile(path.join(out, "index.html"), "utf8");
    assert.match(html, new RegExp(`src="${manifest.files["app.js"].file.replace(".", "\\.")}"`));
    assert.match(html, /<meta name="studybuddy-api-base" content="https:\/\/api\.example\/"/);
    const app = await readFile(path.join(out, manifest.files["app.js"].file), "utf8");
    assert.ok(app.includes(`from "./${manifest.files["api.js"].file}"`));
    assert.ok(!/from "\.\/api\.js"/.test(app));
  });

  test("the same sources give the same names, a change gives a new one", async () => {
    const src = path.join(scratch, "src");
    await mkdir(src, { recursive: true });
    await writeFile(path.join(src, "index.html"), '<script type="module" src="main.js"></script>');
    await writeFile(path.join(src, "main.js"), 'import { x } from "./lib.js";\nconsole.log(x);\n');
    await writeFile(path.join(src, "lib.js"), "export const x = 1;\n");
    const a = await buildWeb({ src, out: path.join(scratch, "a") });
    const b = await buildWeb({ src, out: path.join(scratch, "b") });
    assert.equal(a.files["main.js"].file, b.files["main.js"].file);
    await writeFile(path.join(src, "lib.js"), "export const x = 2;\n");
    const c = await buildWeb({ src, out: path.join(scratch, "c") });
    assert.notEqual(c.files["lib.js"].file, a.files["lib.js"].file);
    // main.js did not change, but it names lib.js, so its own hash changes too.
    assert.notEqual(c.files["main.js"].file, a.files["main.js"].file);
  });

  test("a reference to a missing file fails the build", async () => {
    const src = path.join(scratch, "broken");
    await mkdir(src, { recursive: true });
    await writeFile(path.join(src, "index.html"), '<link rel="stylesheet" href="gone.css">');
    await assert.rejects(buildWeb({ src, out: path.join(scratch, "d") }), /refers to gone\.css/);
  });
});

describe("bundle-assets", () => {
  test("bundles translations and images with hashed names and a manifest", async () => {
    const out = path.join(scratch, "assets");
    const manifest = await bundleAssets({ src: path.join(repo, "assets"), out });
    assert.deepEqual(manifest.locales, ["de", "en"]);
    const en = manifest.files["i18n/en.json"];
    assert.match(en.file, /^i18n\/en\.[0-9a-f]{8}\.json$/);
    assert.equal(en.kind, "translation");
    const content = await readFile(path.join(out, en.file));
    assert.equal(sha256(content), en.sha256);
    assert.equal(JSON.parse(content)["plan.title"], "Plan a study session");
    assert.equal(manifest.files["images/icon.svg"].kind, "image");
    const onDisk = JSON.parse(await readFile(path.join(out, "manifest.json"), "utf8"));
    assert.deepEqual(onDisk.files, manifest.files);
  });

  test("translations must match the English keys and placeholders", () => {
    const problems = checkTranslations({
      en: { a: "Hello {name}", b: "Bye" },
      de: { a: "Hallo {nom}", c: "extra" },
    });
    assert.deepEqual(problems, [
      "i18n/de.json: a has placeholders {nom}, not {name}",
      "i18n/de.json: missing b",
      "i18n/de.json: c is not in i18n/en.json",
    ]);
  });

  test("an SVG with a script and a broken translation fail the bundle", async () => {
    const src = path.join(scratch, "bad-assets");
    await mkdir(path.join(src, "i18n"), { recursive: true });
    await mkdir(path.join(src, "images"), { recursive: true });
    await writeFile(path.join(src, "i18n", "en.json"), "{ not json");
    await writeFile(
      path.join(src, "images", "x.svg"),
      '<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
    );
    await assert.rejects(bundleAssets({ src, out: path.join(scratch, "bad-out") }), (error) => {
      assert.ok(error.problems.some((p) => p.startsWith("i18n/en.json:")));
      assert.ok(error.problems.some((p) => /x\.svg: has a script/.test(p)));
      return true;
    });
  });
});
