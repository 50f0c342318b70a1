// Study sessions: what a client may send, checked before anything reaches the database.

import { badRequest, validationFailed } from "./errors.mjs";

export const LIMITS = Object.freeze({
  subject: 100,
  topic: 200,
  notes: 2000,
  minDuration: 5,
  maxDuration: 480,
  maxReminder: 1440,
  maxListLimit: 500,
  maxReminderWindow: 7 * 24 * 60,
});

const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})$/i;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

const FIELDS = ["subject", "topic", "starts_at", "duration_minutes", "remind_minutes_before", "notes"];

/** True for a session id as the API hands them out (a UUID). */
export function isSessionId(value) {
  return typeof value === "string" && UUID.test(value);
}

/** Parses an RFC 3339 timestamp with an offset into a Date, or returns null. */
export function parseTimestamp(value) {
  if (typeof value !== "string" || !RFC3339.test(value)) return null;
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? null : date;
}

function text(fields, body, name, max, { required = false, nullable = true } = {}) {
  const value = body[name];
  if (value === undefined) {
    if (required) fields[name] = "is required";
    return undefined;
  }
  if (value === null) {
    if (nullable && !required) return null;
    fields[name] = required ? "is required" : "must not be null";
    return undefined;
  }
  if (typeof value !== "string") {
    fields[name] = "must be a string";
    return undefined;
  }
  const trimmed = value.trim();
  if (trimmed.length > max) fields[name] = `must be at most ${max} characters`;
  else if (trimmed === "" && !nullable) fields[name] = "must not be empty";
  return trimmed === "" ? null : trimmed;
}

function integer(fields, body, name, min, max, { required = false, nullable = false } = {}) {
  const value = body[name];
  if (value === undefined) {
    if (required) fields[name] = "is required";
    return undefined;
  }
  if (value === null) {
    if (nullable) return null;
    fields[name] = required ? "is required" : "must not be null";
    return undefined;
  }
  if (!Number.isInteger(value) || value < min || value > max) {
    fields[name] = `must be a whole number from ${min} to ${max}`;
    return undefined;
  }
  return value;
}

function checkUnknown(fields, body, allowed) {
  for (const key of Object.keys(body)) {
    if (!allowed.includes(key)) fields[key] = "is not a field of a study session";
  }
}

function requireObject(body) {
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    throw badRequest("The request body must be a JSON object.");
  }
}

function readFields(body, { partial }) {
  const fields = {};
  const out = {};
  const required = !partial;
  out.subject = text(fields, body, "subject", LIMITS.subject, { required, nullable: false });
  out.topic = text(fields, body, "topic", LIMITS.topic);
  out.notes = text(fields, body, "notes", LIMITS.notes);
  if (body.starts_at !== undefined || required) {
    const startsAt = parseTimestamp(body.starts_at);
    if (startsAt === null) {
      fields.starts_at =
        body.starts_at === undefined || body.starts_at === null
          ? "is required"
          : "must be an RFC 3339 date-time with an offset, e.g. 2025-03-01T18:00:00+01:00";
    } else {
      out.starts_at = startsAt.toISOString();
    }
  }
  out.duration_minutes = integer(fields, body, "duration_minutes", LIMITS.minDuration, LIMITS.maxDuration, {
    required,
  });
  out.remind_minutes_before = integer(fields, body, "remind_minutes_before", 0, LIMITS.maxReminder, {
    nullable: true,
  });
  return { fields, out };
}

function withoutUndefined(object) {
  return Object.fromEntries(Object.entries(object).filter(([, value]) => value !== undefined));
}

/** Checks the body of `POST /api/sessions`; returns the new session's fields or throws a 422. */
export function parseNewSession(body) {
  requireObject(body);
  const { fields, out } = readFields(body, { partial: false });
  checkUnknown(fields, body, FIELDS);
  if (Object.keys(fields).length > 0) throw validationFailed(fields);
  return {
    topic: null,
    notes: null,
    remind_minutes_before: null,
    ...withoutUndefined(out),
  };
}

/** Checks the body of `PATCH /api/sessions/{id}`; returns the fields to change or throws. */
export function parseSessionChanges(body) {
  requireObject(body);
  const { fields, out } = readFields(body, { partial: true });
  if (body.completed !== undefined) {
    if (typeof body.completed !== "boolean") fields.completed = "must be true or false";
    else out.completed = body.completed;
  }
  checkUnknown(fields, body, [...FIELDS, "completed"]);
  if (Object.keys(fields).length > 0) throw validationFailed(fields);
  const changes = withoutUndefined(out);
  if (Object.keys(changes).length === 0) {
    throw validationFailed({ body: "names no field to change" });
  }
  return changes;
}

/** Checks the query of `GET /api/sessions`. */
export function parseListQuery(params) {
  const fields = {};
  const query = { from: null, to: null, status: "all", limit: 100 };
  for (const key of ["from", "to"]) {
    if (params.has(key)) {
      const date = parseTimestamp(params.get(key));
      if (date === null) fields[key] = "must be an RFC 3339 date-time with an offset";
      else query[key] = date.toISOString();
    }
  }
  if (params.has("status")) {
    const status = params.get("status");
    if (!["all", "planned", "completed"].includes(status)) {
      fields.status = "must be all, planned or completed";
    } else query.status = status;
  }
  if (params.has("limit")) {
    const limit = Number(params.get("limit"));
    if (!Number.isInteger(limit) || limit < 1 || limit > LIMITS.maxListLimit) {
      fields.limit = `must be a whole number from 1 to ${LIMITS.maxListLimit}`;
    } else query.limit = limit;
  }
  if (query.from && query.to && query.from > query.to) fields.to = "must not be before from";
  if (Object.keys(fields).length > 0) throw validationFailed(fields);
  return query;
}

/** Checks `within_minutes` of `GET /api/reminders` (default 60). */
export function parseReminderWindow(params) {
  if (!params.has("within_minutes")) return 60;
  const within = Number(params.get("within_minutes"));
  if (!Number.isInteger(within) || within < 0 || within > LIMITS.maxReminderWindow) {
    throw validationFailed({
      within_minutes: `must be a whole number from 0 to ${LIMITS.maxReminderWindow}`,
    });
  }
  return within;
}

/** When the reminder for `session` fires, as an ISO string, or null when it has none. */
export function reminderTime(session) {
  if (session.remind_minutes_before === null || session.remind_minutes_before === undefined) return null;
  return new Date(Date.parse(session.starts_at) - session.remind_minutes_before * 60_000).toISOString();
}

/** The API's view of a stored session (a database row or an in-memory record). */
export function toSession(row) {
  const iso = (value) => (value === null || value === undefined ? null : new Date(value).toISOString());
  const session = {
    id: row.study_session_id,
    subject: row.subject,
    topic: row.topic ?? null,
    starts_at: iso(row.starts_at),
    duration_minutes: row.duration_minutes,
    remind_minutes_before: row.remind_minutes_before ?? null,
    remind_at: null,
    notes: row.notes ?? null,
    completed: row.completed_at !== null && row.completed_at !== undefined,
    completed_at: iso(row.completed_at),
    created_at: iso(row.created_at),
    updated_at: iso(row.updated_at),
  };
  session.remind_at = reminderTime(session);
  return session;
}
