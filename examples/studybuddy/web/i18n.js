// Translations, loaded from the asset bundle: `assets/manifest.json` names the content-hashed
// file of each locale. Without a bundle (local development serves assets/ as it is) the
// unhashed `assets/i18n/<locale>.json` is used.

let messages = {};
let locale = "en";

function assetsBase() {
  const configured = document.querySelector('meta[name="studybuddy-assets"]')?.content.trim();
  return new URL(configured || "assets/", document.baseURI);
}

async function fetchJson(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: ${response.status}`);
  return response.json();
}

let manifestPromise = null;

/** The asset bundle's manifest, or null when the assets are served unbundled. Fetched once. */
function assetManifest() {
  manifestPromise ??= fetchJson(new URL("manifest.json", assetsBase())).catch(() => null);
  return manifestPromise;
}

/** Picks the best locale for the browser and loads its messages. */
export async function loadMessages(preferred = navigator.languages ?? [navigator.language]) {
  const base = assetsBase();
  const manifest = await assetManifest();
  const available = manifest?.locales ?? ["en", "de"];
  locale =
    preferred.map((tag) => tag.toLowerCase().split("-")[0]).find((tag) => available.includes(tag)) ?? "en";
  const file = manifest?.files?.[`i18n/${locale}.json`]?.file ?? `i18n/${locale}.json`;
  messages = await fetchJson(new URL(file, base));
  document.documentElement.lang = locale;
  return locale;
}

/** The message `key` with `{name}` placeholders filled in from `vars`. */
export function t(key, vars = {}) {
  const template = messages[key] ?? key;
  return template.replace(/\{(\w+)\}/g, (whole, name) => (name in vars ? String(vars[name]) : whole));
}

/** Translates every element with a data-i18n attribute under `root`. */
export function translatePage(root = document) {
  for (const element of root.querySelectorAll("[data-i18n]")) {
    const key = element.getAttribute("data-i18n");
    if (key in messages) element.textContent = messages[key];
  }
}

/** The URL of an image in the asset bundle, e.g. `images/streak.svg`. */
export async function assetUrl(name) {
  const base = assetsBase();
  const file = (await assetManifest())?.files?.[name]?.file ?? name;
  return new URL(file, base).href;
}

export const currentLocale = () => locale;
