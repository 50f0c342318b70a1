// The HTTP API: routes, request parsing, errors, CORS and (for local development and UI tests)
// the web app's static files. No framework: node:http is enough for eight routes.

import http from "node:http";
import { readFile, stat } from "node:fs/promises";
import path from "node:path";
import { HttpError, badRequest, notFound, validationFailed } from "./errors.mjs";
import {
  isSessionId,
  parseListQuery,
  parseNewSession,
  parseReminderWindow,
  parseSessionChanges,
} from "./sessions.mjs";
import { computeStreak, isValidTimeZone, localDay } from "./streak.mjs";

const MAX_BODY_BYTES = 64 * 1024;

/** Every route the API serves. `api/openapi.yaml` describes exactly these (a unit test checks). */
export const routes = [
  { method: "GET", path: "/healthz", operationId: "getHealth", handler: getHealth },
  { method: "GET", path: "/api/sessions", operationId: "listSessions", handler: listSessions },
  { method: "POST", path: "/api/sessions", operationId: "createSession", handler: createSession },
  { method: "GET", path: "/api/sessions/{id}", operationId: "getSession", handler: getSession },
  { method: "PATCH", path: "/api/sessions/{id}", operationId: "updateSession", handler: updateSession },
  { method: "DELETE", path: "/api/sessions/{id}", operationId: "deleteSession", handler: deleteSession },
  { method: "GET", path: "/api/streak", operationId: "getStreak", handler: getStreak },
  { method: "GET", path: "/api/reminders", operationId: "listReminders", handler: listReminders },
];

const compiled = routes.map((route) => ({
  ...route,
  pattern: new RegExp(`^${route.path.replace(/\{(\w+)\}/g, "(?<$1>[^/]+)")}$`),
}));

/** Finds the route for `method` and `pathname`: `{ route, params }`, or `{ allowed }` for a 405. */
export function matchRoute(method, pathname) {
  const allowed = [];
  for (const route of compiled) {
    const match = route.pattern.exec(pathname);
    if (!match) continue;
    if (route.method === method || (method === "HEAD" && route.method === "GET")) {
      return { route, params: { ...match.groups } };
    }
    allowed.push(route.method);
  }
  return allowed.length ? { allowed } : null;
}

async function getHealth({ store, version }) {
  try {
    await store.ping();
    return { status: 200, body: { status: "ok", version, database: "ok" } };
  } catch {
    return { status: 503, body: { status: "unavailable", version, database: "unreachable" } };
  }
}

async function listSessions({ store, url }) {
  const query = parseListQuery(url.searchParams);
  return { status: 200, body: { sessions: await store.listSessions(query) } };
}

async function createSession({ store, readJson }) {
  const session = await store.createSession(parseNewSession(await readJson()));
  return { status: 201, body: session, headers: { location: `/api/sessions/${session.id}` } };
}

function sessionId(params) {
  if (!isSessionId(params.id)) throw notFound("No study session has this id.");
  return params.id.toLowerCase();
}

async function getSession({ store, params }) {
  const session = await store.getSession(sessionId(params));
  if (!session) throw notFound("No study session has this id.");
  return { status: 200, body: session };
}

async function updateSession({ store, params, readJson }) {
  const id = sessionId(params);
  const changes = parseSessionChanges(await readJson());
  const session = await store.updateSession(id, changes);
  if (!session) throw notFound("No study session has this id.");
  return { status: 200, body: session };
}

async function deleteSession({ store, params }) {
  if (!(await store.deleteSession(sessionId(params)))) throw notFound("No study session has this id.");
  return { status: 204 };
}

async function getStreak({ store, url, now }) {
  const timeZone = url.searchParams.get("tz") ?? "UTC";
  if (!isValidTimeZone(timeZone)) {
    throw validationFailed({ tz: "must be an IANA time zone such as Europe/Berlin" });
  }
  const today = localDay(now(), timeZone);
  const streak = computeStreak(await store.studyDays(timeZone), today);
  return { status: 200, body: { time_zone: timeZone, today, ...streak } };
}

async function listReminders({ store, url, now }) {
  const within = parseReminderWindow(url.searchParams);
  const at = now();
  return {
    status: 200,
    body: { now: at.toISOString(), within_minutes: within, reminders: await store.dueReminders(at, within) },
  };
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const type = req.headers["content-type"] ?? "";
    if (!/^application\/json\b/i.test(type)) {
      reject(new HttpError(415, "unsupported_media_type", "Send the body as application/json."));
      req.resume();
      return;
    }
    const chunks = [];
    let size = 0;
    req.on("data", (chunk) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        // Answer, discard the rest of the body and close the connection after the answer.
        const error = new HttpError(
          413,
          "payload_too_large",
          `The body may be at most ${MAX_BODY_BYTES} bytes.`,
        );
        reject(Object.assign(error, { headers: { connection: "close" } }));
        req.removeAllListeners("data");
        req.resume();
        return;
      }
      chunks.push(chunk);
    });
    req.on("end", () => {
      try {
        resolve(JSON.parse(Buffer.concat(chunks).toString("utf8")));
      } catch {
        reject(badRequest("The body is not valid JSON."));
      }
    });
    req.on("error", reject);
  });
}

const CONTENT_TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".woff2": "font/woff2",
  ".txt": "text/plain; charset=utf-8",
};

/** Content-hashed file names (`app.3f2a9c1b.js`) never change, so browsers may keep them forever. */
export const HASHED_NAME = /\.[0-9a-f]{8}\.[a-z0-9]+$/;

async function serveFile(req, res, root, relative) {
  let decoded;
  try {
    decoded = decodeURIComponent(relative);
  } catch {
    throw badRequest("The path is not valid.");
  }
  const base = path.resolve(root);
  let file = path.resolve(base, `.${path.posix.normalize(`/${decoded}`)}`);
  if (decoded.includes("\0") || (file !== base && !file.startsWith(base + path.sep))) throw notFound();
  let info = await stat(file).catch(() => null);
  if (info?.isDirectory()) {
    file = path.join(file, "index.html");
    info = await stat(file).catch(() => null);
  }
  if (!info?.isFile()) throw notFound();
  const body = await readFile(file);
  res.writeHead(200, {
    "content-type": CONTENT_TYPES[path.extname(file)] ?? "application/octet-stream",
    "content-length": body.length,
    "cache-control": HASHED_NAME.test(file) ? "public, max-age=31536000, immutable" : "no-cache",
    "x-content-type-options": "nosniff",
  });
  res.end(req.method === "HEAD" ? undefined : body);
}

function corsHeaders(req, corsOrigins) {
  const origin = req.headers.origin;
  if (!origin || corsOrigins.length === 0) return {};
  if (corsOrigins.includes("*")) return { "access-control-allow-origin": "*" };
  return corsOrigins.includes(origin) ? { "access-control-allow-origin": origin, vary: "Origin" } : {};
}

function send(res, status, body, headers = {}, method = "GET") {
  const json = body === undefined ? undefined : JSON.stringify(body);
  res.writeHead(status, {
    ...(json !== undefined ? { "content-type": "application/json; charset=utf-8" } : {}),
    ...(json !== undefined ? { "content-length": Buffer.byteLength(json) } : {}),
    "cache-control": "no-store",
    "x-content-type-options": "nosniff",
    ...headers,
  });
  res.end(method === "HEAD" ? undefined : json);
}

function fromDatabaseError(error) {
  // An unknown time zone passed to `at time zone` (Node knew it, PostgreSQL did not).
  if (error?.code === "22023") return validationFailed({ tz: "is not a time zone the database knows" });
  // A check constraint: validation should have caught it, but the database has the last word.
  if (error?.code === "23514") return validationFailed({ body: "breaks a rule of the database" });
  return null;
}

/**
 * The request handler. `store` is the PostgreSQL store (or the in-memory one in tests);
 * `now` is the clock (tests pass a fixed one).
 */
export function createApp({
  store,
  version = "dev",
  staticDir = null,
  assetsDir = null,
  corsOrigins = [],
  now = () => new Date(),
  log = console,
}) {
  return async function handle(req, res) {
    const cors = corsHeaders(req, corsOrigins);
    let url;
    try {
      url = new URL(req.url, "http://localhost");
    } catch {
      send(res, 400, badRequest("The request target is not valid.").toJSON(), cors);
      return;
    }
    try {
      const isApi = url.pathname === "/healthz" || url.pathname.startsWith("/api/");
      if (isApi && req.method === "OPTIONS") {
        send(res, 204, undefined, {
          ...cors,
          "access-control-allow-methods": "GET, POST, PATCH, DELETE",
          "access-control-allow-headers": "content-type",
          "access-control-max-age": "600",
        });
        return;
      }
      const found = isApi ? matchRoute(req.method, url.pathname) : null;
      if (found?.allowed) {
        throw Object.assign(
          new HttpError(405, "method_not_allowed", `Use ${found.allowed.join(", ")} here.`),
          {
            headers: { allow: found.allowed.join(", ") },
          },
        );
      }
      if (found?.route) {
        const result = await found.route.handler({
          store,
          version,
          url,
          params: found.params,
          now,
          readJson: () => readBody(req),
        });
        send(res, result.status, result.body, { ...cors, ...result.headers }, req.method);
        return;
      }
      if (isApi) throw notFound("No such API endpoint.");
      if (req.method !== "GET" && req.method !== "HEAD") throw notFound();
      if (assetsDir && url.pathname.startsWith("/assets/")) {
        await serveFile(req, res, assetsDir, url.pathname.slice("/assets/".length));
      } else if (staticDir) {
        await serveFile(req, res, staticDir, url.pathname);
      } else {
        throw notFound();
      }
    } catch (caught) {
      const error = caught instanceof HttpError ? caught : fromDatabaseError(caught);
      if (error) {
        send(res, error.status, error.toJSON(), { ...cors, ...caught.headers }, req.method);
        return;
      }
      log.error(`${req.method} ${url.pathname} failed:`, caught);
      const internal = new HttpError(500, "internal", "Something went wrong on our side.");
      if (!res.headersSent) send(res, 500, internal.toJSON(), cors, req.method);
      else res.destroy();
    }
  };
}

/** An http.Server running the app; call `listen(port, host)` on it. */
export function createServer(options) {
  const server = http.createServer(createApp(options));
  server.keepAliveTimeout = 5_000;
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  return server;
}
