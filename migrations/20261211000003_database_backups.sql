-- Backups of environment databases: a `pg_dump --format=custom` taken before a deployment
-- applies migrations, stored as artifact bytes under its content key (`sha256/ab/ab…`) and
-- recorded here, so a failed migration or a later rollback restores exactly those bytes (their
-- sha256 is checked before a restore).
--
-- `tables` keeps each table's row counters from pg_stat_user_tables at backup time
-- ([{"table": "public.study_session", "inserted": 10, "updated": 2, "deleted": 0, "live": 10}]),
-- so a rollback can say what was written since ("42 rows inserted in study_session").
create table database_backup (
    database_backup_id uuid primary key default gen_random_uuid(),
    environment_id  uuid not null references environment on delete cascade,
    -- The deployment that took it; null for a backup taken by hand.
    deployment_id   uuid references deployment on delete set null,
    -- The database's name on its server (never its URL, which may hold a password).
    database_name   text not null,
    storage_key     text not null,
    sha256          text not null check (sha256 ~ '^[0-9a-f]{64}$'),
    size_bytes      bigint not null check (size_bytes >= 0),
    -- The newest version in the app's schema_migration table when it was taken (null: none).
    schema_version  int,
    tables          jsonb not null default '[]',
    -- `pg_dump --version`, since pg_restore must be at least as new.
    pg_dump_version text not null,
    created_at      timestamptz not null default now()
);
create index database_backup_by_environment on database_backup (environment_id, created_at desc);
create index database_backup_by_deployment on database_backup (deployment_id) where deployment_id is not null;
