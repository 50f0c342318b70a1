-- Reminders: a session may ask to be reminded some minutes before it starts (null: no reminder).
-- The reminder query looks only at planned sessions that have one, so index just those.

alter table study_session
    add column remind_minutes_before integer check (remind_minutes_before between 0 and 1440);

create index study_session_pending_reminder on study_session (starts_at)
    where remind_minutes_before is not null and completed_at is null;
