-- Rollbacks: a deployment of kind 'rollback' takes an environment back from the deployment it
-- rolls back (`rolls_back_id`) to an earlier release, in one stage of kind 'rollback' whose
-- steps (flags, site, deploy job, database) are recorded in deployment_step like a deploy's.
--
-- Exactly once: one rollback per rolled-back deployment while it is under way or done
-- (`deployment_one_rollback`); a second request finds the first. A failed rollback may be asked
-- for again (a person fixed what stopped it).

alter table deployment add column rolls_back_id uuid references deployment;
-- Why: {"kind": "person", "name": …} or {"kind": "incident", "rule": …, "figures": {…}}.
alter table deployment add column cause jsonb;

alter table deployment drop constraint deployment_trigger_check;
alter table deployment add constraint deployment_trigger_check
    check (trigger in ('manual', 'api', 'schedule', 'pipeline', 'incident'));
alter table deployment add constraint deployment_rollback_names_what
    check ((kind = 'rollback') = (rolls_back_id is not null));

create unique index deployment_one_rollback on deployment (rolls_back_id)
    where kind = 'rollback' and state <> 'failed';

alter table deployment_stage drop constraint deployment_stage_kind_check;
alter table deployment_stage add constraint deployment_stage_kind_check
    check (kind in ('deploy', 'jobs', 'manual', 'gate', 'flags', 'check', 'publish', 'migrate', 'rollback'));
