-- Feature flags that Unleash and OpenFeature SDKs read: flags per project, their state per
-- environment, segments, and a numbered snapshot of each environment's whole flag state.
--
-- SDKs are served snapshots, not these rows. After every change domain::flags::store builds the
-- environment's `/api/client/features` body from the rows, in the same transaction, and stores it
-- as the environment's next snapshot when it differs from the last one. So the newest snapshot
-- always equals what the rows say, a deployment can record the snapshot it ran with, and a
-- rollback can put that snapshot back. Every writer first locks the environment rows it changes
-- (`for no key update`, in environment_id order), which keeps snapshot versions gapless and
-- makes concurrent restores of one snapshot apply once.

create table flag (
    flag_id      uuid primary key default gen_random_uuid(),
    project_id   uuid not null references project on delete cascade,
    -- Unleash's rule: 1-100 characters that encodeURIComponent leaves as they are, so the name
    -- is safe in a URL path (/api/frontend/features/{name}); "." and ".." would be path steps.
    name         text not null check (name ~ '^[A-Za-z0-9_.!~*''()-]{1,100}$' and name not in ('.', '..')),
    description  text not null default '' check (length(description) <= 2000),
    -- The person or team to ask about the flag, in words.
    owner        text check (length(owner) <= 200),
    -- Unleash's flag types; each has an expected lifetime (domain::flags::definition::FlagType).
    flag_type    text not null check (flag_type in ('release', 'experiment', 'operational', 'kill-switch', 'permission')),
    -- Marked stale by a person, and sent to SDKs as `stale`. "Potentially stale" (older than its
    -- type's expected lifetime) is computed when read, never stored: it changes with the clock,
    -- and a snapshot must change only when someone changes something.
    stale        boolean not null default false,
    created_at   timestamptz not null default now(),
    created_by   text not null,
    -- Archived flags are left out of every environment's state. The row and its per-environment
    -- state stay, so that the name stays taken and a restore can bring the flag back.
    archived_at  timestamptz,
    unique (project_id, name),
    -- The target of flag_dependency's foreign keys, which keep parent and child in one project.
    unique (project_id, flag_id)
);

-- A flag that needs another flag of its project (Unleash's feature dependencies). One level
-- only: a parent has no parents, which domain::flags::store checks.
create table flag_dependency (
    project_id     uuid not null,
    flag_id        uuid not null,
    parent_flag_id uuid not null,
    -- The parent must be on (true) or off (false).
    enabled        boolean not null default true,
    -- When not empty, the parent's variant must be one of these.
    variants       text[] not null default '{}',
    primary key (flag_id, parent_flag_id),
    foreign key (project_id, flag_id) references flag (project_id, flag_id) on delete cascade,
    foreign key (project_id, parent_flag_id) references flag (project_id, flag_id) on delete cascade,
    check (flag_id <> parent_flag_id)
);
create index flag_dependency_by_parent on flag_dependency (parent_flag_id);

-- A flag in one environment. No row means off with no strategies: that is how a flag starts,
-- and how it is in an environment added to the project later.
create table flag_environment (
    flag_id         uuid not null references flag on delete cascade,
    environment_id  uuid not null references environment on delete cascade,
    enabled         boolean not null default false,
    -- Unleash strategy objects ({name, parameters, constraints, segments, variants, sortOrder}),
    -- in evaluation order, validated by domain::flags::definition::Strategies. Empty means on
    -- for everyone when enabled. Segment ids inside are checked by the store (there is no
    -- foreign key into JSON), and a segment in use cannot be deleted.
    strategies      jsonb not null default '[]' check (jsonb_typeof(strategies) = 'array'),
    -- The flag's own variants ({name, weight, weightType, stickiness, payload, overrides}).
    variants        jsonb not null default '[]' check (jsonb_typeof(variants) = 'array'),
    -- Whether SDKs emit impression events for this flag here.
    impression_data boolean not null default false,
    updated_at      timestamptz not null default now(),
    updated_by      text not null,
    primary key (flag_id, environment_id)
);
create index flag_environment_by_environment on flag_environment (environment_id);

-- A named list of constraints that strategies share by id.
create table segment (
    -- An integer because that is how Unleash's wire format names segments (`"segments": [3]`).
    segment_id   integer generated always as identity primary key,
    project_id   uuid not null references project on delete cascade,
    name         text not null check (length(name) between 1 and 100),
    description  text not null default '' check (length(description) <= 2000),
    -- Unleash constraint objects ({contextName, operator, values | value, inverted, caseInsensitive}).
    constraints  jsonb not null default '[]' check (jsonb_typeof(constraints) = 'array'),
    created_at   timestamptz not null default now(),
    updated_at   timestamptz not null default now(),
    -- Deleted segments keep their id, so that restoring a snapshot that used one brings it back.
    deleted_at   timestamptz
);
create unique index segment_name on segment (project_id, name) where deleted_at is null;

-- Every state an environment's flags have been in, numbered 1, 2, 3… per environment.
-- Rows are only ever inserted.
create table flag_snapshot (
    flag_snapshot_id bigint generated always as identity primary key,
    environment_id   uuid not null references environment on delete cascade,
    version          bigint not null check (version > 0),
    -- The `/api/client/features` body SDKs get (domain::flags::ClientFeatures).
    state            jsonb not null,
    -- SHA-256 of `state` as Flightdeck serializes it (jsonb does not keep the bytes): the ETag,
    -- and how "nothing changed" is told apart from a change.
    sha256           text not null check (sha256 ~ '^[0-9a-f]{64}$'),
    created_at       timestamptz not null default now(),
    created_by       text not null,
    -- Why it was taken, in words: "smart-reminders on", "restored snapshot 12".
    reason           text not null,
    -- The version a restore copied, for the history page.
    restored_from    bigint,
    -- The key a restore was called with (a rollback passes its own), so that a retried restore
    -- does not undo changes made after the first one.
    idempotency_key  text check (length(idempotency_key) between 1 and 200),
    unique (environment_id, version),
    unique (environment_id, idempotency_key)
);

-- Every server process keeps the newest snapshot of each environment in memory and reloads it
-- when told. A trigger, so that whichever process writes a snapshot, every process hears of it;
-- Postgres delivers the notification when the transaction commits.
create function notify_flag_snapshot() returns trigger language plpgsql as $$
begin
    perform pg_notify('flightdeck_change', json_build_object(
        'topic', 'flags',
        'project_id', (select project_id from environment where environment_id = new.environment_id),
        'environment_id', new.environment_id,
        'version', new.version)::text);
    return null;
end $$;

create trigger flag_snapshot_created after insert on flag_snapshot
    for each row execute function notify_flag_snapshot();
