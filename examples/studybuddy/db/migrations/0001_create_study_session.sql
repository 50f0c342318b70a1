-- A study session the student plans: a subject, when it starts and how long it lasts.
-- `completed_at` is set (by the server clock) when the student marks it done; streaks count
-- the days with at least one completed session.

create function set_updated_at() returns trigger
language plpgsql as $$
begin
    new.updated_at = now();
    return new;
end;
$$;

create table study_session (
    study_session_id uuid primary key default gen_random_uuid(),
    subject text not null check (char_length(subject) between 1 and 100),
    topic text check (char_length(topic) <= 200),
    starts_at timestamptz not null,
    duration_minutes integer not null check (duration_minutes between 5 and 480),
    notes text check (char_length(notes) <= 2000),
    completed_at timestamptz,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);

create index study_session_starts_at on study_session (starts_at);

create trigger study_session_updated_at
    before update on study_session
    for each row execute function set_updated_at();
