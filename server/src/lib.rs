//! The Flightdeck server: configuration, the embedded PostgreSQL cluster, the HTTP surface
//! (pages, server functions, REST API, live events), background services and the CLI.

pub mod cli;
pub mod cli_deploy;
pub mod cli_flags;
pub mod config;
pub mod database;
pub mod deployer;
pub mod embedded_pg;
pub mod engine;
pub mod envdb;
pub mod flag_cache;
pub mod http;
pub mod instance;
pub mod live;
pub mod repository;
pub mod runner;
pub mod scheduler;
pub mod serve;
pub mod sites;
