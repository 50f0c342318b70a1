//! Integration tests: the real server on a random port, a fresh database per test.

mod access;
mod assets;
mod binary;
mod definition;
mod deploy_world;
mod deployments;
mod envdb;
mod errors;
mod flags;
mod gates;
mod helpers;
mod live;
mod overview;
mod people;
mod refusals;
mod rollback_bench;
mod rollback_crash;
mod rollback_stages;
mod rollbacks;
mod runs;
mod schedules;
mod schema_rollback;
mod sites;
mod storage;
mod work;
