// An in-memory store with the same interface as the PostgreSQL one. The unit tests and the UI
// tests use it; the integration tests check the real one against PostgreSQL.

import { randomUUID } from "node:crypto";
import { localDay } from "../streak.mjs";
import { toSession } from "../sessions.mjs";

export function createMemoryStore({ now = () => new Date() } = {}) {
  const rows = new Map();
  const sorted = () =>
    [...rows.values()].sort(
      (a, b) =>
        a.starts_at.localeCompare(b.starts_at) || a.study_session_id.localeCompare(b.study_session_id),
    );

  return {
    async ping() {},

    async listSessions({ from, to, status, limit }) {
      return sorted()
        .filter((row) => from === null || row.starts_at >= from)
        .filter((row) => to === null || row.starts_at < to)
        .filter((row) => status === "all" || (status === "completed") === (row.completed_at !== null))
        .slice(0, limit)
        .map(toSession);
    },

    async getSession(id) {
      return rows.has(id) ? toSession(rows.get(id)) : null;
    },

    async createSession(input) {
      const stamp = now().toISOString();
      const row = {
        ...input,
        study_session_id: randomUUID(),
        completed_at: null,
        created_at: stamp,
        updated_at: stamp,
      };
      rows.set(row.study_session_id, row);
      return toSession(row);
    },

    async updateSession(id, changes) {
      const row = rows.get(id);
      if (!row) return null;
      const { completed, ...fields } = changes;
      Object.assign(row, fields, { updated_at: now().toISOString() });
      if (completed === true) row.completed_at ??= now().toISOString();
      if (completed === false) row.completed_at = null;
      return toSession(row);
    },

    async deleteSession(id) {
      return rows.delete(id);
    },

    async studyDays(timeZone) {
      const days = new Set();
      for (const row of rows.values()) {
        if (row.completed_at !== null) days.add(localDay(new Date(row.completed_at), timeZone));
      }
      return [...days];
    },

    async dueReminders(at, withinMinutes) {
      const horizon = at.getTime() + withinMinutes * 60_000;
      return sorted()
        .map(toSession)
        .filter(
          (s) =>
            !s.completed &&
            s.remind_at !== null &&
            Date.parse(s.starts_at) > at.getTime() &&
            Date.parse(s.remind_at) <= horizon,
        )
        .sort((a, b) => a.remind_at.localeCompare(b.remind_at) || a.id.localeCompare(b.id));
    },
  };
}
