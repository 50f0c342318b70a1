-- API tokens for the app's feature-flag SDKs, each scoped to one environment of one project.
--
-- Separate from api_token: an SDK token is checked on every flag evaluation (the hot path), so
-- every server process keeps all live SDK tokens in memory and reloads them when this table
-- changes (the trigger below). The secret has Unleash's form `project:environment.random`, which
-- Unleash SDKs and Edge expect; only its SHA-256 is stored.
create table sdk_token (
    sdk_token_id   uuid primary key default gen_random_uuid(),
    environment_id uuid not null references environment on delete cascade,
    -- `frontend`: shipped inside apps (Unleash Frontend API, OFREP from browsers and phones),
    -- so it only reads evaluated results. `client`: server SDKs, which download the rules.
    kind           text not null check (kind in ('frontend', 'client')),
    name           text not null check (length(name) between 1 and 100),
    token_hash     bytea not null unique,
    -- The start of the secret, so people can tell tokens apart: "studybuddy:production.Xy3…".
    token_prefix   text not null,
    created_by     uuid references app_user on delete set null,
    created_at     timestamptz not null default now(),
    -- Written at most once a minute per server process, never on every request.
    last_used_at   timestamptz,
    revoked_at     timestamptz
);
create index sdk_token_by_environment on sdk_token (environment_id);

create function notify_sdk_token() returns trigger language plpgsql as $$
begin
    perform pg_notify('flightdeck_change', json_build_object(
        'topic', 'sdk_tokens',
        'project_id', (select project_id from environment where environment_id = new.environment_id),
        'environment_id', new.environment_id)::text);
    return null;
end $$;

-- Not on last_used_at: a token being used changes nothing the caches hold.
create trigger sdk_token_changed after insert or update of revoked_at on sdk_token
    for each row execute function notify_sdk_token();
