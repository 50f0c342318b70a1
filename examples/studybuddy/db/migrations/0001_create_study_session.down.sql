-- Undoes 0001: drops what it made, in reverse order (the table's data goes with it).

drop trigger study_session_updated_at on study_session;

drop index study_session_starts_at;

drop table study_session;

drop function set_updated_at();
