//! Flightdeck's domain.
//!
//! The modules always compiled (roles, states, artifact kinds and the views pages show) are plain
//! serde types that the browser shares with the server. Everything behind the `server` feature
//! runs only on the server: the pipeline definition parser, the store (sqlx on Postgres),
//! authentication, authorization and the audit log.

pub mod artifact;
pub mod audit;
pub mod audit_details;
#[cfg(feature = "server")]
pub mod clock;
pub mod flag_view;
pub mod overview;
pub mod people;
pub mod release_view;
pub mod role;
pub mod run_view;
pub mod scope;
pub mod state;

#[cfg(feature = "server")]
pub mod access;
#[cfg(feature = "server")]
pub mod auth;
#[cfg(feature = "server")]
pub mod db;
#[cfg(feature = "server")]
pub mod definition;
#[cfg(feature = "server")]
pub mod deployment;
#[cfg(feature = "server")]
pub mod envdb;
#[cfg(feature = "server")]
pub mod environment;
#[cfg(feature = "server")]
pub mod flags;
#[cfg(feature = "server")]
pub mod portal;
#[cfg(feature = "server")]
pub mod project;
#[cfg(feature = "server")]
pub mod release;
#[cfg(feature = "server")]
pub mod run;
#[cfg(feature = "server")]
pub mod schedule;
#[cfg(feature = "server")]
pub mod site;
