// The PostgreSQL store: every query the API runs, in one place.

import pg from "pg";
import { toSession } from "../sessions.mjs";

/** A connection pool for `databaseUrl`. */
export function createPool(databaseUrl, { max = 10 } = {}) {
  return new pg.Pool({
    connectionString: databaseUrl,
    max,
    idleTimeoutMillis: 10_000,
    connectionTimeoutMillis: 5_000,
    application_name: "studybuddy-api",
  });
}

// Columns a PATCH may set, mapped from the API's field names.
const UPDATABLE = ["subject", "topic", "starts_at", "duration_minutes", "remind_minutes_before", "notes"];

export function createPostgresStore(pool) {
  return {
    async ping() {
      await pool.query("select 1");
    },

    async listSessions({ from, to, status, limit }) {
      const { rows } = await pool.query(
        `select * from study_session
          where ($1::timestamptz is null or starts_at >= $1)
            and ($2::timestamptz is null or starts_at < $2)
            and ($3::text = 'all' or ($3::text = 'completed') = (completed_at is not null))
          order by starts_at, study_session_id
          limit $4`,
        [from, to, status, limit],
      );
      return rows.map(toSession);
    },

    async getSession(id) {
      const { rows } = await pool.query("select * from study_session where study_session_id = $1", [id]);
      return rows.length ? toSession(rows[0]) : null;
    },

    async createSession(input) {
      const { rows } = await pool.query(
        `insert into study_session (subject, topic, starts_at, duration_minutes, remind_minutes_before, notes)
         values ($1, $2, $3, $4, $5, $6)
         returning *`,
        [
          input.subject,
          input.topic,
          input.starts_at,
          input.duration_minutes,
          input.remind_minutes_before,
          input.notes,
        ],
      );
      return toSession(rows[0]);
    },

    async updateSession(id, changes) {
      const sets = [];
      const values = [id];
      for (const column of UPDATABLE) {
        if (changes[column] !== undefined) {
          values.push(changes[column]);
          sets.push(`${column} = $${values.length}`);
        }
      }
      if (changes.completed !== undefined) {
        // Completing twice keeps the first completion time; the server clock is the only source.
        values.push(changes.completed);
        sets.push(
          `completed_at = case when $${values.length}::boolean then coalesce(completed_at, now()) end`,
        );
      }
      const { rows } = await pool.query(
        `update study_session set ${sets.join(", ")} where study_session_id = $1 returning *`,
        values,
      );
      return rows.length ? toSession(rows[0]) : null;
    },

    async deleteSession(id) {
      const { rowCount } = await pool.query("delete from study_session where study_session_id = $1", [id]);
      return rowCount > 0;
    },

    /** The local days (YYYY-MM-DD in `timeZone`) on which at least one session was completed. */
    async studyDays(timeZone) {
      const { rows } = await pool.query(
        `select distinct to_char(completed_at at time zone $1, 'YYYY-MM-DD') as day
           from study_session
          where completed_at is not null`,
        [timeZone],
      );
      return rows.map((row) => row.day);
    },

    /** Planned sessions, not started yet, whose reminder fires before `now` + `withinMinutes`. */
    async dueReminders(now, withinMinutes) {
      const { rows } = await pool.query(
        `select * from study_session
          where completed_at is null
            and remind_minutes_before is not null
            and starts_at > $1
            and starts_at - make_interval(mins => remind_minutes_before)
                <= $1::timestamptz + make_interval(mins => $2)
          order by starts_at - make_interval(mins => remind_minutes_before), study_session_id`,
        [now.toISOString(), withinMinutes],
      );
      return rows.map(toSession);
    },
  };
}
