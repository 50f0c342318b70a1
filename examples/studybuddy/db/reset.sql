-- Empties StudyBuddy's database: drops every object in the public schema (the app's tables,
-- its function and the migration record) and recreates the schema as PostgreSQL 15 makes it.
-- For test databases only:
--   psql "$TEST_DATABASE_URL" -v ON_ERROR_STOP=1 -f db/reset.sql

drop schema if exists public cascade;
create schema public;
alter schema public owner to pg_database_owner;
grant usage on schema public to public;
