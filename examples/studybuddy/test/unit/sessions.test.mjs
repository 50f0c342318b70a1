import assert from "node:assert/strict";
import { test } from "node:test";
import { HttpError } from "../../src/errors.mjs";
import {
  parseListQuery,
  parseNewSession,
  parseReminderWindow,
  parseSessionChanges,
  parseTimestamp,
  toSession,
} from "../../src/sessions.mjs";

const valid = { subject: "Biology", starts_at: "2025-03-03T18:00:00+01:00", duration_minutes: 45 };

function fieldsOf(fn) {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof HttpError);
    return { status: error.status, fields: error.fields };
  }
  assert.fail("expected an error");
}

test("a new session needs a subject, a start and a duration, and gets defaults", () => {
  assert.deepEqual(parseNewSession(valid), {
    subject: "Biology",
    topic: null,
    notes: null,
    remind_minutes_before: null,
    starts_at: "2025-03-03T17:00:00.000Z",
    duration_minutes: 45,
  });
});

test("text is trimmed and an empty optional text is null", () => {
  const session = parseNewSession({ ...valid, subject: "  Maths ", topic: "   ", notes: " x " });
  assert.equal(session.subject, "Maths");
  assert.equal(session.topic, null);
  assert.equal(session.notes, "x");
});

test("every invalid field is named at once", () => {
  const { status, fields } = fieldsOf(() =>
    parseNewSession({
      subject: "",
      starts_at: "tomorrow",
      duration_minutes: 4,
      remind_minutes_before: 1441,
      colour: "blue",
    }),
  );
  assert.equal(status, 422);
  assert.deepEqual(Object.keys(fields).sort(), [
    "colour",
    "duration_minutes",
    "remind_minutes_before",
    "starts_at",
    "subject",
  ]);
});

test("missing required fields are reported as required", () => {
  const { fields } = fieldsOf(() => parseNewSession({}));
  assert.deepEqual(fields, {
    subject: "is required",
    starts_at: "is required",
    duration_minutes: "is required",
  });
});

test("limits are enforced", () => {
  assert.ok(fieldsOf(() => parseNewSession({ ...valid, subject: "x".repeat(101) })).fields.subject);
  assert.ok(fieldsOf(() => parseNewSession({ ...valid, duration_minutes: 45.5 })).fields.duration_minutes);
  assert.ok(fieldsOf(() => parseNewSession({ ...valid, duration_minutes: "45" })).fields.duration_minutes);
  assert.equal(parseNewSession({ ...valid, duration_minutes: 480 }).duration_minutes, 480);
});

test("a body that is not an object is a 400", () => {
  for (const body of [null, [], "text", 3]) {
    assert.equal(fieldsOf(() => parseNewSession(body)).status, 400);
  }
});

test("timestamps need an offset", () => {
  assert.equal(parseTimestamp("2025-03-03T18:00:00"), null);
  assert.equal(parseTimestamp("2025-13-03T18:00:00Z"), null);
  assert.equal(parseTimestamp("2025-03-03T18:00:00.123Z").toISOString(), "2025-03-03T18:00:00.123Z");
});

test("changes carry only what was sent, and completed must be a boolean", () => {
  assert.deepEqual(parseSessionChanges({ completed: true }), { completed: true });
  assert.deepEqual(parseSessionChanges({ topic: null, remind_minutes_before: null }), {
    topic: null,
    remind_minutes_before: null,
  });
  assert.equal(
    fieldsOf(() => parseSessionChanges({ completed: "yes" })).fields.completed,
    "must be true or false",
  );
  assert.equal(fieldsOf(() => parseSessionChanges({ subject: null })).fields.subject, "must not be null");
  assert.equal(fieldsOf(() => parseSessionChanges({ duration_minutes: null })).status, 422);
  assert.ok(fieldsOf(() => parseSessionChanges({})).fields.body);
});

test("list queries are checked", () => {
  const params = (q) => new URLSearchParams(q);
  assert.deepEqual(parseListQuery(params("")), { from: null, to: null, status: "all", limit: 100 });
  assert.equal(parseListQuery(params("status=planned&limit=5")).limit, 5);
  assert.ok(fieldsOf(() => parseListQuery(params("status=soon"))).fields.status);
  assert.ok(fieldsOf(() => parseListQuery(params("limit=0"))).fields.limit);
  assert.ok(
    fieldsOf(() => parseListQuery(params("from=2025-03-02T00:00:00Z&to=2025-03-01T00:00:00Z"))).fields.to,
  );
  assert.equal(parseReminderWindow(params("")), 60);
  assert.equal(parseReminderWindow(params("within_minutes=0")), 0);
  assert.ok(fieldsOf(() => parseReminderWindow(params("within_minutes=-1"))).fields.within_minutes);
});

test("a stored row becomes the API's session with its reminder time", () => {
  const session = toSession({
    study_session_id: "3f1c5d0e-7a4b-4c9e-8f00-1234567890ab",
    subject: "Biology",
    topic: null,
    starts_at: new Date("2025-03-03T17:00:00Z"),
    duration_minutes: 45,
    remind_minutes_before: 15,
    notes: null,
    completed_at: null,
    created_at: new Date("2025-03-01T10:00:00Z"),
    updated_at: new Date("2025-03-01T10:00:00Z"),
  });
  assert.equal(session.remind_at, "2025-03-03T16:45:00.000Z");
  assert.equal(session.completed, false);
  assert.equal(session.starts_at, "2025-03-03T17:00:00.000Z");
});
