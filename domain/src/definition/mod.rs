//! The pipeline definition, `flightdeck.yml`: its format, its parser and its checks.
//!
//! A definition says how one project goes from a commit to production, in the spirit of a
//! GitHub Actions workflow: phases hold stages in order, and a stage either runs jobs (shell
//! steps on runners), waits at a gate for people, or acts on an environment.
//!
//! ```yaml
//! project:
//!   name: StudyBuddy
//!   key: studybuddy                 # a slug: a-z, 0-9 and single hyphens
//! triggers:
//!   push: { branches: [main] }      # default when `triggers` is left out: [main]
//! environments:                     # in the order the overview shows them
//!   staging:
//!     url: /env/staging/
//!     database: { name: studybuddy_staging }        # or { url_env: STAGING_DATABASE_URL }
//!   production:
//!     protection: { required_approvals: 1, allowed_roles: [release-manager] }
//!     deploy_window: { schedule: "0 2 * * SUN", duration: 4h, timezone: Europe/Berlin }
//! phases:
//!   ci-cd:
//!     title: CI/CD
//!     stages:
//!       build:
//!         jobs:
//!           web:
//!             steps: [npm ci, { name: Build, run: npm run build }]
//!             artifacts: [{ name: web, path: dist, kind: web }]
//!             timeout: 15m
//!           apk:
//!             runs_on: [android]
//!             optional: true        # skipped when no runner has the labels
//!             steps: [./gradlew assembleRelease]
//!       qa-approval:
//!         gate: { role: qa, approvals: 1 }
//!       deploy-staging:
//!         needs: [build, qa-approval]
//!         deploy: { environment: staging, job: { steps: [./scripts/deploy.sh] } }
//! schedules:
//!   staging-daily:
//!     cron: "0 18 * * *"
//!     timezone: Europe/Berlin
//!     action: promote
//!     environment: staging
//! rollback:
//!   automatic:
//!     window: 30m
//!     on: { crash_free_sessions_below: 99.0, error_rate_above: 5 }
//!   manual: { roles: [release-manager] }
//! ```
//!
//! # Top level
//! - `project` (required): `name`, `key` (slug), `description`.
//! - `triggers.push.branches`: branches whose pushes start a run.
//! - `environments`: name → `url` (absolute, or a path on the portal), `protection`
//!   (`required_approvals` 0–10, default 0; `allowed_roles`, default developer and
//!   release-manager), `deploy_window` (opens at each firing of the cron `schedule` in
//!   `timezone` and stays open for `duration`), `database` (exactly one of `url_env`, `name`).
//! - `phases` (required): name → `title`, `description`, `stages`. Phase order is file order.
//! - `schedules`: name → `cron` (five fields or `@daily`-style), `timezone` (IANA, required),
//!   `action`: `run` (a run of `branch`, default `main`) or `promote` (the newest good release
//!   into `environment`), `description`.
//! - `rollback`: `automatic` (`enabled`, default true; `window`; `environments`, default all;
//!   `on`: thresholds as below), `manual.roles` (default release-manager), `restore_database`
//!   and `restore_flags` (both default true).
//!
//! # Stages
//! Every stage has a name unique across the whole pipeline, an optional `title` (default: the
//! name in words), `description` and `needs`, and exactly one of these keys:
//! - `manual`: done by people (writing code, testing by hand). Before the first deploy stage it
//!   happens on laptops and is shown, never run. After a deploy it is a checklist in the
//!   deployment that people tick: the numbered items of `checklist` (a markdown file in the
//!   repository, read at the release's commit), or one item, the stage itself. Optional `hook`
//!   (pre-commit, commit-msg or pre-push) and `steps` (the commands the hook runs, shown so
//!   everyone runs the same). `manual:` alone is fine.
//! - `jobs`: name → job, run by runners; jobs run in parallel unless their `needs` say otherwise.
//! - `gate`: `role` and `approvals` (1–10, default 1). Nobody decides at a gate on a release
//!   they deployed or whose commits they wrote; `admins_decide_own_releases: true` (default
//!   false) lets admins do so, audited as security.
//! - `deploy`: `environment`; `publish` (web or asset-bundle artifacts served as the
//!   environment's static site); `migrate` (a db-schema artifact applied to the environment's
//!   `database` after a backup); `job` (steps a runner runs to deploy). One deploy stage per
//!   environment; a schedule's `promote` starts there, and the stages below act on an
//!   environment after its deploy stage.
//! - `flags`: `environment`, `set`: flag → `{ enabled, rollout: 0–100 }`.
//! - `check`: `environment`, `window`, `fail_on` thresholds, `expect_events` (analytics event
//!   names that must arrive within the window).
//! - `publish`: `environment`, `artifacts` (as in `deploy.publish`).
//! - `migrate`: `environment`, `artifact` (as in `deploy.migrate`), `backup` (default true).
//!
//! `needs` lists stages that must succeed first, in any phase. Left out, a stage needs the
//! stage before it in file order, skipping manual stages (so a pipeline reads top to bottom);
//! `needs: []` starts it with the run. Manual stages are part of no run: they have no `needs`
//! and nothing can need them.
//!
//! Thresholds (`fail_on`, `rollback.automatic.on`): `crash_free_sessions_below` and
//! `error_rate_above` (percentages), `p95_latency_above` (a duration), `min_sessions` (judge
//! nothing before this many sessions).
//!
//! # Jobs
//! `steps` (required, not empty: plain commands or `{ name, run }`), `needs` (jobs of the same
//! stage; to wait for another stage use the stage's `needs`), `runs_on` (labels a runner must
//! have; none means any runner), `artifacts` (`name` unique across the pipeline, `path` relative
//! to the working directory, `kind`: apk, ipa, web, asset-bundle, db-schema, api-spec, report),
//! `timeout` (default 30m), `retries` (0–5), `allow_failure`, `optional` (skipped when no runner
//! has the labels), `env` (map) and `secrets` (names passed as environment variables).
//!
//! Durations are numbers with units from largest to smallest: `45s`, `10m`, `1h30m`, `1d`.
//! Names (project key, phases, stages, jobs, artifacts, environments, schedules) are slugs.
//!
//! # Errors
//! [`parse`] reports every problem it can find, each with its line and column. Problems with
//! the YAML itself or with its shape (a syntax error, an unknown or missing key, a duplicate
//! key, a list where a map belongs) stop the parse, so that one comes alone.

mod diagnostic;
mod duration;
mod graph;
mod jobs;
mod kinds;
mod model;
mod names;
mod raw;
mod schedule;
mod sections;
mod stages;
mod validate;

pub use diagnostic::{Diagnostic, render};
pub use duration::{InvalidDuration, format_duration, parse_duration};
pub use model::{
    ArtifactSpec, AutomaticRollback, DatabaseTarget, Definition, Deploy, DeployWindow, Environment,
    FlagChange, FlagSetting, Gate, GitHook, HealthCheck, HealthThresholds, Job, ManualStage,
    Migrate, Phase, Project, Protection, Publish, RollbackPolicy, Schedule, ScheduleAction, Stage,
    StageKind, Step, Triggers,
};
pub use names::{
    ArtifactName, EnvironmentName, InvalidName, JobName, PhaseName, ProjectKey, ScheduleName,
    StageName,
};
pub use schedule::{CronExpr, InvalidCron};

/// Reads and checks a `flightdeck.yml`.
pub fn parse(source: &str) -> Result<Definition, Vec<Diagnostic>> {
    let raw: raw::RawDefinition =
        serde_saphyr::from_str(source).map_err(|e| vec![diagnostic::from_yaml_error(&e)])?;
    validate::check(&raw)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_sample_in_the_module_docs_parses() {
        let sample: String = include_str!("mod.rs")
            .lines()
            .skip_while(|l| *l != "//! ```yaml")
            .skip(1)
            .take_while(|l| *l != "//! ```")
            .map(|l| {
                format!(
                    "{}\n",
                    l.trim_start_matches("//!").strip_prefix(' ').unwrap_or("")
                )
            })
            .collect();
        assert!(sample.contains("project:"));
        if let Err(diagnostics) = super::parse(&sample) {
            panic!("{}", super::render(&diagnostics, "mod.rs", &sample));
        }
    }
}
