// The StudyBuddy API, as the web app calls it. The API's address comes from the page's
// <meta name="studybuddy-api-base"> (set by `build-web.mjs --api-base`); empty means the
// origin the page was served from.

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.error?.message ?? `The server answered ${status}.`);
    this.status = status;
    this.fields = body?.error?.fields ?? {};
  }
}

function apiBase() {
  const configured = document.querySelector('meta[name="studybuddy-api-base"]')?.content.trim();
  return new URL(configured || "/", window.location.href);
}

async function call(method, path, body) {
  const response = await fetch(new URL(path.replace(/^\//, ""), apiBase()), {
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
