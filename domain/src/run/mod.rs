//! Runs of the pipeline: their plan, the job state machine, claiming work, logs and artifacts.

pub mod artifacts;
pub mod git;
pub mod job;
pub mod plan;
pub mod protocol;
pub mod query;
pub mod spec;
pub mod store;
pub mod transition;
pub mod work;
