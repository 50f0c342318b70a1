-- Why a backup was taken. 'pre-deploy': before a deployment applied its migrations (what a
-- failing migration or a rollback restores). 'safety': by a rollback, of the database as it was
-- just before the rollback changed it, so the rows written since the deploy are kept in a dump a
-- person can open; its deployment_id is the rollback's. One per rollback: a retry after a crash
-- finds it and reuses it rather than dumping the already changed database again.
--
-- Nothing deletes backups or their bytes (the artifact sweep leaves any storage key a backup
-- uses); whatever prunes them later must keep a safety dump at least 30 days
-- (domain::envdb::backup::SAFETY_DUMP_KEPT_DAYS).
alter table database_backup
    add column purpose text not null default 'pre-deploy' check (purpose in ('pre-deploy', 'safety'));
create unique index database_backup_one_safety_dump on database_backup (deployment_id)
    where purpose = 'safety';
