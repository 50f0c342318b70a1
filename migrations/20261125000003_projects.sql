-- Projects and the pipeline definitions they run, environments and schedules.

create table project (
    project_id    uuid primary key default gen_random_uuid(),
    -- The key from flightdeck.yml (`project.key`); used in URLs and the API.
    project_key   text not null unique check (project_key ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    name          text not null,
    description   text,
    created_at    timestamptz not null default now()
);

-- Every version of a project's flightdeck.yml that was loaded. The newest is the current one.
create table definition_version (
    definition_version_id bigint generated always as identity primary key,
    project_id   uuid not null references project on delete cascade,
    source       text not null,
    sha256       text not null,
    -- Where it came from: a file path, "api", or later a commit.
    origin       text not null,
    loaded_by    text not null,
    loaded_at    timestamptz not null default now(),
    unique (project_id, sha256)
);
create index definition_version_current on definition_version (project_id, definition_version_id desc);

-- Environments as declared by the current definition, with what runs there now.
create table environment (
    environment_id  uuid primary key default gen_random_uuid(),
    project_id      uuid not null references project on delete cascade,
    name            text not null,
    position        int not null,
    -- The release deployed there; releases arrive with the deployment engine.
    current_release text,
    deployed_at     timestamptz,
    unique (project_id, name)
);

-- Schedules a release manager has paused. A schedule not listed here fires normally.
create table schedule_pause (
    project_id    uuid not null references project on delete cascade,
    schedule_name text not null,
    paused_by     text not null,
    paused_at     timestamptz not null default now(),
    reason        text,
    primary key (project_id, schedule_name)
);

-- Live updates: any change to what the overview shows notifies every server process, which
-- forwards it to open browsers over SSE. Triggers (not application code) so that a change made
-- by any process, or by hand in psql, reaches the pages.
create function notify_project_change() returns trigger language plpgsql as $$
declare
    changed_project uuid;
begin
    if tg_op = 'DELETE' then
        changed_project := old.project_id;
    else
        changed_project := new.project_id;
    end if;
    perform pg_notify('flightdeck_change',
        json_build_object('topic', 'project', 'project_id', changed_project, 'table', tg_table_name)::text);
    return null;
end $$;

create trigger project_changed after insert or update or delete on project
    for each row execute function notify_project_change();
create trigger definition_version_changed after insert or update or delete on definition_version
    for each row execute function notify_project_change();
create trigger environment_changed after insert or update or delete on environment
    for each row execute function notify_project_change();
create trigger schedule_pause_changed after insert or update or delete on schedule_pause
    for each row execute function notify_project_change();
