-- Undoes 0003.

drop index study_session_completed_at;
