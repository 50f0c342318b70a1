-- Groundwork before releases.
--
-- The project's current definition is an explicit pointer. Before, "current" was the newest
-- definition_version row, so a run of any branch whose flightdeck.yml differed (stored so the run
-- could use it) became the project's definition, its environments' protection included. Versions
-- are now immutable: a run stores the file at its commit for itself, and only a definition
-- upload or the operator's CLI moves the pointer, to a new version or back to a stored one.
alter table project add column current_definition_version_id bigint references definition_version;
update project p set current_definition_version_id =
    (select max(definition_version_id) from definition_version d where d.project_id = p.project_id);

-- Jobs lost with their runner (its lease ran out while it was running them: a crash, kill -9,
-- a lost machine) are an infrastructure failure, not the job's: they go back to the queue on
-- their own, at most twice, apart from the job's own `retries`, with a backoff (`not_before`).
alter table job add column infrastructure_requeues int not null default 0
    check (infrastructure_requeues between 0 and 2);
alter table job add column not_before timestamptz;
