-- The audit log: every state change, sign-in, failed sign-in, denial and token use.
-- Rows are only ever inserted; nothing in Flightdeck updates or deletes them.

create table audit_event (
    audit_event_id bigint generated always as identity primary key,
    occurred_at    timestamptz not null default now(),
    -- user, token, anonymous or system
    actor_kind     text not null check (actor_kind in ('user', 'token', 'anonymous', 'system')),
    actor_id       uuid,
    -- The username or token name at the time, kept even if the account is later renamed.
    actor_name     text not null,
    -- Dotted verb, e.g. session.login, user.role_changed, definition.loaded, access.denied.
    action         text not null,
    -- ok, denied or failed
    outcome        text not null check (outcome in ('ok', 'denied', 'failed')),
    -- security events (sign-ins, denials, token use, bad signatures) can be filtered on their own
    security       boolean not null default false,
    target         text,
    ip             text,
    user_agent     text,
    -- What changed: before/after values or the reason for a refusal.
    details        jsonb not null default '{}'::jsonb
);
create index audit_event_by_time on audit_event (occurred_at desc, audit_event_id desc);
create index audit_event_by_actor on audit_event (actor_name, occurred_at desc);
create index audit_event_by_action on audit_event (action, occurred_at desc);
-- Sign-in throttling counts recent failures per name and per address.
create index audit_event_failed_logins on audit_event (target, occurred_at desc) where action = 'session.login_failed';
create index audit_event_failed_logins_ip on audit_event (ip, occurred_at desc) where action = 'session.login_failed';
