-- Flag changes that need several approvals, and an admin's override.
--
-- `required_approvals: 2` in an environment's protection means two people other than the one
-- asking. The number in force when the change was asked for is kept with it (a later definition
-- does not move a change half way through its approvals), and so is every approver, once each
-- (the audit log has each approval's time and address). An admin may let a pending change through
-- without its approvals, with a reason: the override is kept with the change, so the history
-- can show it, and audited as a security event.
alter table flag_change
    add column required_approvals smallint not null default 0
        check (required_approvals between 0 and 255),
    add column approved_by text[] not null default '{}',
    add column overridden_by text,
    add column override_reason text,
    add constraint flag_change_override_has_reason
        check ((overridden_by is null) = (override_reason is null));

update flag_change set required_approvals = 1 where needs_approval;
update flag_change set approved_by = array[decided_by]
    where needs_approval and decided_by is not null and state in ('approved', 'applied', 'failed');

-- Whether it waits for approvals is now `required_approvals > 0`.
alter table flag_change drop column needs_approval;

-- The history marks snapshots that an overridden change made.
create index flag_change_applied on flag_change (environment_id, applied_version)
    where applied_version is not null;
