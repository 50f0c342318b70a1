-- People, their sessions, API tokens and the one-time setup link.
--
-- Secrets are never stored: passwords as Argon2id PHC strings, session and API tokens as the
-- SHA-256 of the random value the client holds (a lookup by hash is constant-cost and a leaked
-- table does not let anyone sign in).

create table app_user (
    app_user_id   uuid primary key default gen_random_uuid(),
    -- Lower-case login name: unique however it is typed.
    username      text not null unique check (username ~ '^[a-z0-9][a-z0-9._-]{1,62}$'),
    display_name  text not null,
    role          text not null check (role in ('viewer', 'developer', 'qa', 'product', 'release-manager', 'admin')),
    password_hash text not null,
    disabled      boolean not null default false,
    created_at    timestamptz not null default now(),
    updated_at    timestamptz not null default now()
);

create table user_session (
    user_session_id uuid primary key default gen_random_uuid(),
    token_hash      bytea not null unique,
    app_user_id     uuid not null references app_user on delete cascade,
    created_at      timestamptz not null default now(),
    last_seen_at    timestamptz not null default now(),
    -- Absolute end of the session; an idle timeout is checked against last_seen_at.
    expires_at      timestamptz not null,
    ip              text,
    user_agent      text
);
create index user_session_by_user on user_session (app_user_id);
create index user_session_by_expiry on user_session (expires_at);

create table api_token (
    api_token_id  uuid primary key default gen_random_uuid(),
    name          text not null check (length(name) between 1 and 100),
    token_hash    bytea not null unique,
    -- The first characters of the token, shown in lists so a person can tell tokens apart.
    token_prefix  text not null,
    -- What the token may do, e.g. {read, definition:write}. Checked by every route that takes tokens.
    scopes        text[] not null check (cardinality(scopes) > 0),
    created_by    uuid references app_user on delete set null,
    created_at    timestamptz not null default now(),
    expires_at    timestamptz,
    last_used_at  timestamptz,
    last_used_ip  text,
    revoked_at    timestamptz
);

-- The link printed at first start that lets one person create the first admin.
create table setup_link (
    setup_link_id uuid primary key default gen_random_uuid(),
    token_hash    bytea not null unique,
    created_at    timestamptz not null default now(),
    expires_at    timestamptz not null,
    used_at       timestamptz
);
