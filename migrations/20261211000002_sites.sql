-- Sites: each environment's web app, served at its URL path by every replica.
--
-- A site version is what one deployment publishes into one environment: some artifacts of the
-- release's run (the `web` directory at the root, an `asset-bundle` under `assets/`) and the
-- runtime configuration written next to index.html as config.json. Versions are immutable and
-- kept: a rollback switches back to an old one, whose bytes replicas still have on disk.
--
-- What an environment serves now is one pointer row (environment_site). Moving it is one update
-- in the deployment's transaction, so the switch is atomic; the notification goes out when that
-- transaction commits, and every replica swaps its in-memory pointer on it.

create table site_version (
    site_version_id uuid primary key default gen_random_uuid(),
    environment_id  uuid not null references environment on delete cascade,
    release_id      uuid not null references release on delete cascade,
    -- The deployment that published it (none for one made by hand or by a test).
    deployment_id   uuid references deployment on delete set null,
    -- config.json, served as it is.
    runtime_config  jsonb not null default '{}',
    created_at      timestamptz not null default now()
);
create index site_version_by_environment on site_version (environment_id, created_at desc);

-- The artifacts a version serves. The artifact's sha256 and storage key are copied: an upload
-- retried under the same job replaces the artifact row's bytes, never a published site's.
create table site_version_artifact (
    site_version_id uuid not null references site_version on delete cascade,
    artifact_id     uuid not null references artifact,
    name            text not null,
    kind            text not null check (kind in ('web', 'asset-bundle')),
    sha256          text not null check (sha256 ~ '^[0-9a-f]{64}$'),
    storage_key     text not null,
    -- Where its files appear under the site's URL: '' for the root, 'assets/' for a bundle.
    mount           text not null check (mount = '' or mount ~ '^[a-z0-9-]+/$'),
    primary key (site_version_id, name)
);
create index site_version_artifact_by_artifact on site_version_artifact (artifact_id);

-- What each environment serves now. No row: nothing deployed there yet.
create table environment_site (
    environment_id  uuid primary key references environment on delete cascade,
    site_version_id uuid not null references site_version,
    switched_at     timestamptz not null,
    switched_by     text not null
);

-- Every replica follows these: a new version is fetched and unpacked ahead of its switch; a
-- switch swaps what the environment's path serves.
create function notify_site_change() returns trigger language plpgsql as $$
begin
    perform pg_notify('flightdeck_site', json_build_object(
        'topic', 'site', 'table', tg_table_name,
        'environment_id', new.environment_id, 'site_version_id', new.site_version_id)::text);
    return null;
end $$;

create trigger site_version_inserted after insert on site_version
    for each row execute function notify_site_change();
create trigger environment_site_changed after insert or update on environment_site
    for each row execute function notify_site_change();
