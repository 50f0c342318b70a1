-- Flag changes that wait: for an approval (environments whose protection requires approvals,
-- production in the sample), for a time (a scheduled change), or both. The change itself is a
-- domain::flags::definition::EnvironmentEdit, applied through the flag store like any other, so
-- it is snapshotted and audited the same way. The kill switch never waits.
create table flag_change (
    flag_change_id  bigint generated always as identity primary key,
    environment_id  uuid not null references environment on delete cascade,
    flag_name       text not null,
    edit            jsonb not null,
    -- What it does, in words: "smart-reminders on".
    summary         text not null,
    requested_by    text not null,
    requested_at    timestamptz not null default now(),
    -- Not before this time; null: as soon as it is approved.
    apply_at        timestamptz,
    needs_approval  boolean not null,
    -- pending: waiting for an approval; approved: waiting for its time (or being applied);
    -- applied, rejected, canceled: done; failed: the edit no longer applies (see problem).
    state           text not null check (state in ('pending', 'approved', 'applied', 'rejected', 'canceled', 'failed')),
    decided_by      text,
    decided_at      timestamptz,
    applied_at      timestamptz,
    -- The snapshot the change made (null when it changed nothing).
    applied_version bigint,
    problem         text
);
create index flag_change_open on flag_change (environment_id, requested_at) where state in ('pending', 'approved');
create index flag_change_due on flag_change (apply_at) where state = 'approved';

create function notify_flag_change() returns trigger language plpgsql as $$
begin
    perform pg_notify('flightdeck_change', json_build_object(
        'topic', 'flag_changes',
        'project_id', (select project_id from environment where environment_id = new.environment_id),
        'environment_id', new.environment_id)::text);
    return null;
end $$;

create trigger flag_change_changed after insert or update of state on flag_change
    for each row execute function notify_flag_change();
