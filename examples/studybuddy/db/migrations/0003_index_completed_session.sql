-- Streaks read the completion time of every completed session; keep that a small index scan.

create index study_session_completed_at on study_session (completed_at)
    where completed_at is not null;
