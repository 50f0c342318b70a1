-- Releases and the deployments that promote them environment by environment.
--
-- A release is made in the transaction that sees a default-branch run succeed (one per run:
-- `unique (run_id)`), so whichever replica finishes the run's last job makes it, once. Its
-- artifacts are the run's, pinned while the release can be deployed or rolled back to.
--
-- A deployment is one release going into one environment: the stages of the pipeline that
-- belong to that environment (its deploy stage and what follows it), run in order. States follow
-- domain::deployment::DeploymentState; each transition is computed by its pure `apply` and saved
-- in one place. The deployer service drives deployments, one replica at a time per deployment
-- (a lease, like a runner's on a job). Steps that touch the world (a backup, migrations, the
-- site switch, the deploy job) are recorded before and after they run, so a deployment resumes
-- where it stopped after a crash.

create table release (
    release_id          uuid primary key default gen_random_uuid(),
    project_id          uuid not null references project on delete cascade,
    run_id              uuid not null unique references run on delete cascade,
    -- Per project, 1, 2, 3…
    number              bigint not null,
    -- What people call it: the app's version and the run number, or the date and run number.
    version             text not null,
    commit_sha          text not null check (commit_sha ~ '^[0-9a-f]{40}$'),
    branch              text not null,
    commit_author       text not null,
    commit_message      text not null,
    previous_release_id uuid references release on delete set null,
    -- Generated from the commits; editable by developers and product managers (audited).
    notes               text not null default '',
    notes_edited_by     text,
    notes_edited_at     timestamptz,
    -- Set once the server has read the commits since the previous release and the release's
    -- migrations from its db-schema artifact (work done outside the run's transaction).
    described_at        timestamptz,
    describe_error      text,
    created_at          timestamptz not null,
    unique (project_id, number),
    unique (project_id, version)
);
create index release_by_project on release (project_id, number desc);

-- The commits a release brings since the previous one, newest first.
create table release_commit (
    release_id  uuid not null references release on delete cascade,
    position    int not null,
    sha         text not null,
    author      text not null,
    message     text not null,
    committed_at timestamptz,
    primary key (release_id, position)
);

-- The migrations in a release's db-schema artifact.
create table release_migration (
    release_id  uuid not null references release on delete cascade,
    version     int not null,
    name        text not null,
    sha256      text not null,
    has_down    boolean not null default false,
    primary key (release_id, version)
);

create table deployment (
    deployment_id     uuid primary key default gen_random_uuid(),
    project_id        uuid not null references project on delete cascade,
    environment_id    uuid not null references environment on delete cascade,
    -- Per project, 1, 2, 3…
    number            bigint not null,
    kind              text not null check (kind in ('deploy', 'rollback')),
    release_id        uuid not null references release,
    -- What ran in the environment when the deployment was asked for.
    from_release_id   uuid references release,
    state             text not null check (state in ('queued', 'running', 'waiting', 'succeeded', 'failed', 'canceled')),
    -- Why it is in that state, in words ("waiting for QA approval", "rejected by ana: …").
    reason            text,
    -- manual, api, schedule, pipeline (a green run reaching its environment)
    trigger           text not null check (trigger in ('manual', 'api', 'schedule', 'pipeline')),
    triggered_by      text not null,
    idempotency_key   text,
    -- A release manager's permission to start outside the deploy window, with why.
    window_override_by     text,
    window_override_reason text,
    -- The one replica driving it now.
    driver            uuid,
    lease_expires_at  timestamptz,
    -- Recorded at the end: the environment's flag snapshot and the configuration deployed.
    flag_snapshot_version bigint,
    runtime_config    jsonb,
    created_at        timestamptz not null,
    started_at        timestamptz,
    finished_at       timestamptz,
    unique (project_id, number),
    unique (environment_id, idempotency_key)
);
-- One deployment in progress per environment at a time.
create unique index deployment_one_active on deployment (environment_id)
    where state in ('queued', 'running', 'waiting');
create index deployment_by_environment on deployment (environment_id, created_at desc);
create index deployment_by_release on deployment (release_id);
create index deployment_active on deployment (lease_expires_at) where state in ('queued', 'running', 'waiting');

-- The stages a deployment runs, in order, each a copy of the definition's stage at the time.
create table deployment_stage (
    deployment_stage_id uuid primary key default gen_random_uuid(),
    deployment_id   uuid not null references deployment on delete cascade,
    name            text not null,
    title           text not null,
    kind            text not null check (kind in ('deploy', 'jobs', 'manual', 'gate', 'flags', 'check', 'publish', 'migrate')),
    position        int not null,
    -- The stage as the definition declared it (serde of domain::deployment::StageSpec).
    spec            jsonb not null,
    state           text not null check (state in ('queued', 'running', 'waiting', 'succeeded', 'failed', 'canceled', 'skipped')),
    reason          text,
    -- What the stage found or did (checklist items, check results, a backup, the site).
    outcome         jsonb not null default '{}',
    started_at      timestamptz,
    finished_at     timestamptz,
    unique (deployment_id, name),
    unique (deployment_id, position)
);

-- A step of a stage that changes the world, recorded before it starts and after it ends, so a
-- restarted deployer knows what was done. (stage, name) is unique: a step runs once.
create table deployment_step (
    deployment_stage_id uuid not null references deployment_stage on delete cascade,
    name            text not null,
    position        int not null,
    state           text not null check (state in ('started', 'done', 'failed')),
    detail          jsonb not null default '{}',
    started_at      timestamptz not null,
    finished_at     timestamptz,
    primary key (deployment_stage_id, name)
);

-- What people decided on a stage: approvals and rejections (gates and protected deploys), a
-- checklist tick, a release manager passing or failing an inconclusive check, a window override.
create table deployment_decision (
    decision_id     bigint generated always as identity primary key,
    deployment_stage_id uuid not null references deployment_stage on delete cascade,
    kind            text not null check (kind in ('approve', 'reject', 'tick', 'untick', 'pass', 'fail', 'override-window')),
    -- The checklist item ticked (its number), else null.
    item            int,
    decided_by      text not null,
    comment         text,
    decided_at      timestamptz not null
);
create index deployment_decision_by_stage on deployment_decision (deployment_stage_id, decision_id);
-- One approval per person per stage.
create unique index deployment_decision_one_approval on deployment_decision (deployment_stage_id, decided_by)
    where kind = 'approve';

-- A deployment's jobs (its deploy job, the tests after it) are runs of the same engine as CI:
-- a run that belongs to a deployment stage, with the release's commit.
alter table run add column deployment_stage_id uuid references deployment_stage on delete cascade;
alter table run drop constraint run_trigger_check;
alter table run add constraint run_trigger_check
    check (trigger in ('push', 'webhook', 'manual', 'api', 'schedule', 'deployment'));
create index run_by_deployment_stage on run (deployment_stage_id) where deployment_stage_id is not null;

-- What runs in an environment now, by id (the text column stays for what pages already show).
alter table environment add column current_release_id uuid references release;
alter table environment add column current_deployment_id uuid references deployment;

-- Live updates: pages showing releases and deployments reload on these.
create function notify_release_change() returns trigger language plpgsql as $$
declare
    changed_project uuid;
begin
    if tg_table_name in ('release', 'deployment') then
        changed_project := new.project_id;
    elsif tg_table_name = 'deployment_stage' then
        select project_id into changed_project from deployment where deployment_id = new.deployment_id;
    else
        select d.project_id into changed_project from deployment d
            join deployment_stage s using (deployment_id) where s.deployment_stage_id = new.deployment_stage_id;
    end if;
    perform pg_notify('flightdeck_change',
        json_build_object('topic', 'release', 'project_id', changed_project, 'table', tg_table_name)::text);
    return null;
end $$;

create trigger release_changed after insert or update on release
    for each row execute function notify_release_change();
create trigger deployment_inserted after insert on deployment
    for each row execute function notify_release_change();
create trigger deployment_changed after update on deployment
    for each row when (old.state is distinct from new.state or old.reason is distinct from new.reason)
    execute function notify_release_change();
create trigger deployment_stage_changed after insert or update on deployment_stage
    for each row execute function notify_release_change();
create trigger deployment_decision_inserted after insert on deployment_decision
    for each row execute function notify_release_change();
