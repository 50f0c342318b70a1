-- Runs of the pipeline, their stages and jobs, runners, logs and artifacts.
--
-- A run executes the `jobs` stages of a project's pipeline that come before its first deploy
-- stage (the CI part); later stages belong to releases and deployments. States follow
-- domain::state::RunState; every transition is computed in domain::run::transition and stored
-- with the server's clock.

-- Where a project's code lives: the git repository runs check out.
alter table project add column repository text;

create table run (
    run_id           uuid primary key default gen_random_uuid(),
    project_id       uuid not null references project on delete cascade,
    -- Per project, 1, 2, 3…: what people call the run.
    number           bigint not null,
    state            text not null check (state in ('queued', 'running', 'waiting', 'succeeded', 'failed', 'canceled', 'skipped')),
    definition_version_id bigint not null references definition_version,
    -- push, webhook, manual, api, schedule
    trigger          text not null check (trigger in ('push', 'webhook', 'manual', 'api', 'schedule')),
    triggered_by     text not null,
    commit_sha       text not null check (commit_sha ~ '^[0-9a-f]{40}$'),
    branch           text not null,
    commit_author    text not null,
    commit_message   text not null,
    -- The webhook delivery or API idempotency key that made this run, so a redelivery makes none.
    idempotency_key  text,
    created_at       timestamptz not null default now(),
    started_at       timestamptz,
    finished_at      timestamptz,
    unique (project_id, number),
    unique (project_id, idempotency_key)
);
create index run_by_project on run (project_id, number desc);
create index run_by_state on run (project_id, state, number desc);
create index run_by_branch on run (project_id, branch, number desc);
create index run_by_trigger on run (project_id, trigger, number desc);

create table run_stage (
    run_stage_id  uuid primary key default gen_random_uuid(),
    run_id        uuid not null references run on delete cascade,
    name          text not null,
    title         text not null,
    position      int not null,
    needs         text[] not null,
    state         text not null check (state in ('queued', 'running', 'waiting', 'succeeded', 'failed', 'canceled', 'skipped')),
    started_at    timestamptz,
    finished_at   timestamptz,
    unique (run_id, name)
);

create table job (
    job_id           uuid primary key default gen_random_uuid(),
    run_id           uuid not null references run on delete cascade,
    run_stage_id     uuid not null references run_stage on delete cascade,
    name             text not null,
    position         int not null,
    needs            text[] not null,
    runs_on          text[] not null,
    state            text not null check (state in ('queued', 'running', 'waiting', 'succeeded', 'failed', 'canceled', 'skipped')),
    -- Why it is in that state, in words: "waiting for build", "no runner with label android".
    reason           text,
    -- The spec the runner executes (steps, env, timeout, artifacts), frozen at run creation.
    spec             jsonb not null,
    max_attempts     int not null check (max_attempts between 1 and 6),
    attempt          int not null default 0,
    allow_failure    boolean not null,
    optional         boolean not null,
    runner_id        uuid,
    lease_expires_at timestamptz,
    cancel_requested boolean not null default false,
    exit_code        int,
    queued_at        timestamptz,
    started_at       timestamptz,
    finished_at      timestamptz,
    unique (run_id, run_stage_id, name)
);
-- The claim query: queued jobs in order, skipping locked rows.
create index job_claimable on job (queued_at) where state = 'queued';
-- The lease reaper.
create index job_leased on job (lease_expires_at) where state = 'running';
create index job_by_run on job (run_id);

-- Machines that run jobs. The built-in local runner registers itself like any other.
create table runner (
    runner_id     uuid primary key default gen_random_uuid(),
    name          text not null unique,
    labels        text[] not null,
    version       text not null,
    api_token_id  uuid references api_token on delete set null,
    created_at    timestamptz not null default now(),
    last_seen_at  timestamptz not null default now()
);

-- Every line a job printed, as it arrived. (job, attempt, line) is the key and the page order.
create table log_line (
    job_id   uuid not null references job on delete cascade,
    attempt  int not null,
    line_no  int not null,
    at       timestamptz not null default now(),
    stream   text not null default 'stdout' check (stream in ('stdout', 'stderr', 'system')),
    text     text not null,
    primary key (job_id, attempt, line_no)
);

create table artifact (
    artifact_id   uuid primary key default gen_random_uuid(),
    job_id        uuid not null references job on delete cascade,
    run_id        uuid not null references run on delete cascade,
    project_id    uuid not null references project on delete cascade,
    name          text not null,
    kind          text not null check (kind in ('apk', 'ipa', 'web', 'asset-bundle', 'db-schema', 'api-spec', 'report')),
    -- A directory is stored as a .tar.gz of it; a file as itself.
    file_name     text not null,
    content_type  text not null,
    size_bytes    bigint not null,
    sha256        text not null,
    -- Where the storage backend keeps it (a key, not a path).
    storage_key   text not null,
    -- Kept forever while a release refers to it (set by the release engine).
    pinned        boolean not null default false,
    created_at    timestamptz not null default now(),
    unique (job_id, name)
);
create index artifact_by_run on artifact (run_id);
create index artifact_retention on artifact (project_id, kind, created_at desc) where not pinned;

-- Live updates for runs, stages and jobs: the overview and run pages reload on these.
create function notify_run_change() returns trigger language plpgsql as $$
declare
    row_run uuid;
    row_project uuid;
begin
    if tg_table_name = 'run' then
        row_run := new.run_id;
        row_project := new.project_id;
    else
        row_run := new.run_id;
        select project_id into row_project from run where run_id = row_run;
    end if;
    perform pg_notify('flightdeck_change',
        json_build_object('topic', 'run', 'project_id', row_project, 'run_id', row_run, 'table', tg_table_name)::text);
    return null;
end $$;

create trigger run_inserted after insert on run for each row execute function notify_run_change();
create trigger run_changed after update on run for each row
    when (old.state is distinct from new.state) execute function notify_run_change();
create trigger run_stage_inserted after insert on run_stage for each row execute function notify_run_change();
create trigger run_stage_changed after update on run_stage for each row
    when (old.state is distinct from new.state) execute function notify_run_change();
-- Lease renewals update jobs every few seconds; only changes a page shows notify.
create trigger job_inserted after insert on job for each row execute function notify_run_change();
create trigger job_changed after update on job for each row
    when (old.state is distinct from new.state or old.reason is distinct from new.reason
          or old.attempt is distinct from new.attempt or old.cancel_requested is distinct from new.cancel_requested)
    execute function notify_run_change();
create trigger artifact_changed after insert on artifact for each row execute function notify_run_change();

-- New log lines are announced by the code that stores them (one notification per batch, on
-- the channel flightdeck_log), not by a trigger per line.
