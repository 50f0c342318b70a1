-- Undoes 0002: the reminder index, then the column (the reminders set since go with it).

drop index study_session_pending_reminder;

alter table study_session
    drop column remind_minutes_before;
