// The StudyBuddy API, as the web app calls it. The API's address comes from the runtime
// configuration a deployment writes next to index.html (config.json: {"api_base": "…",
// "release": "…", "environment": "…", "monitoring": {…}}), so one build serves every
// environment; without one (or without its api_base) from the page's
// <meta name="studybuddy-api-base"> (set by `build-web.mjs --api-base`); empty means the
// origin the page was served from.

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.error?.message ?? `The server answered ${status}.`);
    this.status = status;
    this.fields = body?.error?.fields ?? {};
  }
}

let runtimeConfigLoad = null;

/**
 * The deployment's runtime configuration, fetched once (revalidated, never a stale copy);
 * an empty object where there is none, such as the API's own development server.
 */
export function runtimeConfig() {
  runtimeConfigLoad ??= fetch(new URL("config.json", window.location.href), { cache: "no-cache" })
    .then((response) => (response.ok ? response.json() : {}))
    .then((config) => (config && typeof config === "object" && !Array.isArray(config) ? config : {}))
    .catch(() => ({}));
  return runtimeConfigLoad;
}

async function apiBase() {
  const config = await runtimeConfig();
  const fromConfig = typeof config.api_base === "string" ? config.api_base.trim() : "";
  const fromPage = document.querySelector('meta[name="studybuddy-api-base"]')?.content.trim();
  return new URL(fromConfig || fromPage || "/", window.location.href);
}

async function call(method, path, body) {
  const response = await fetch(new URL(path.replace(/^\//, ""), await apiBase()), {
    method,
    headers: body === undefined ? {} : { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

export const api = {
  listSessions: (status) => call("GET", `/api/sessions?status=${encodeURIComponent(status)}&limit=200`),
  createSession: (session) => call("POST", "/api/sessions", session),
  updateSession: (id, changes) => call("PATCH", `/api/sessions/${id}`, changes),
  deleteSession: (id) => call("DELETE", `/api/sessions/${id}`),
  streak: (timeZone) => call("GET", `/api/streak?tz=${encodeURIComponent(timeZone)}`),
  reminders: (withinMinutes) => call("GET", `/api/reminders?within_minutes=${withinMinutes}`),
};
