-- Schedule ticks: each time a schedule of a project's current definition is due, exactly once
-- across every server process (domain::schedule).
--
-- A replica claims a due tick by inserting its row (`on conflict do nothing returning`): the
-- replica whose insert returns a row fires it; every other replica's insert returns nothing.
-- The claim commits before the action starts (promote opens its own transaction), and the
-- outcome is written afterwards; a replica that dies in between leaves the tick `claimed`,
-- which pages report and which is never fired twice.

create table schedule_tick (
    project_id     uuid not null references project on delete cascade,
    schedule_name  text not null,
    -- The instant the cron expression named, in UTC (the zone's rules already applied).
    due_at         timestamptz not null,
    -- claimed (firing now, or the replica stopped mid-way), started, nothing-to-do,
    -- skipped-paused, failed, missed (every server was down; a later tick fired instead).
    outcome        text not null check (outcome in
                     ('claimed', 'started', 'nothing-to-do', 'skipped-paused', 'failed', 'missed')),
    -- The deployment or run it started ("deployment #12", "run #40"), or why it did nothing,
    -- or the error.
    detail         text,
    -- deployment or run number, when it started one.
    started_number bigint,
    -- Which server process (its replica id) claimed it; null for `missed`.
    fired_by       uuid,
    -- On the portal's clock.
    fired_at       timestamptz not null,
    -- fired_at − due_at, in milliseconds.
    lateness_ms    bigint not null default 0,
    -- A late (> 60 s) or failed tick raised an alert (an audit entry, shown on the overview).
    alerted        boolean not null default false,
    primary key (project_id, schedule_name, due_at)
);
create index schedule_tick_latest on schedule_tick (project_id, schedule_name, due_at desc);

-- Where a schedule's ticks start: the first time a scheduler saw it (in the current definition),
-- so a new schedule does not fire its whole past.
create table schedule_since (
    project_id     uuid not null references project on delete cascade,
    schedule_name  text not null,
    since          timestamptz not null,
    primary key (project_id, schedule_name)
);

create trigger schedule_tick_changed after insert or update on schedule_tick
    for each row execute function notify_project_change();
