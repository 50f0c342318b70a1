//! The runner: the process that claims jobs from a Flightdeck server and runs them. The built-in
//! local runner and `flightdeck runner` on another machine are this same code, speaking the
//! protocol in [`domain::run::protocol`] over HTTP with a runner token.
//!
//! [`run`] registers under the runner's name and labels, then keeps `concurrency` claim loops
//! going. Each loop long-polls for a job, runs it to its end (see `execute.rs` for what that
//! means, and `workspace.rs` for where), and asks again.
//!
//! Stopping: cancelling `stop` ends the claiming at once (an open long poll is dropped) and lets
//! the jobs under way finish and report; [`run`] returns when the last has. To cut them short
//! too, cancel [`RunnerConfig::abort`]: their process groups are killed, the workspaces removed,
//! and the jobs are not finished, so the server retries or fails them once their leases run out,
//! as it would for a runner that died. `flightdeck runner` does the first on SIGTERM or Ctrl-C and
//! the second on a second one.

pub mod client;
mod command;
mod execute;
mod logs;
mod workspace;

pub use command::{RunnerArgs, run_until_signal};

use anyhow::Context;
use client::{Client, ClientError};
use domain::run::protocol::{
    CLAIM_WAIT_SECS, FinishRequest, HEARTBEAT_SECS, LEASE_SECS, Outcome, RegisterRequest,
};
use reqwest::StatusCode;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The longest pause between claims while the server answers with errors.
const MAX_CLAIM_BACKOFF: Duration = Duration::from_secs(30);

pub struct RunnerConfig {
    /// The server, e.g. `https://deploy.example.com`.
    pub url: String,
    /// An API token with the `runner` scope.
    pub token: String,
    /// Unique per machine; registering again under it updates the labels.
    pub name: String,
    /// What this runner offers; it gets the jobs whose `runs_on` labels it has all of.
    pub labels: Vec<String>,
    /// Where job workspaces are made (created if missing).
    pub work_dir: PathBuf,
    /// How many jobs run at once.
    pub concurrency: usize,
    /// How often a running job's lease is renewed. [default: `HEARTBEAT_SECS`]
    pub heartbeat_interval: Duration,
    /// How long a lease lasts without a heartbeat: when none has been accepted for this long, the
    /// runner gives the job up, since the server has handed it on or will. It also bounds how
    /// long log, artifact and finish calls are retried. [default: `LEASE_SECS`]
    pub lease: Duration,
    /// How long the server holds a claim before answering 204. [default: `CLAIM_WAIT_SECS`]
    pub claim_wait: Duration,
    /// How long log lines may wait to be sent together. [default: 200 ms]
    pub log_flush_interval: Duration,
    /// Between SIGTERM and SIGKILL when a job's processes are stopped. [default: 5 s]
    pub kill_grace: Duration,
    /// Cancel to stop the jobs under way too, not only the claiming (see the module doc).
    pub abort: CancellationToken,
}

impl RunnerConfig {
    /// One job at a time, and the protocol's timings.
    pub fn new(
        url: impl Into<String>,
        token: impl Into<String>,
        name: impl Into<String>,
        labels: Vec<String>,
        work_dir: impl Into<PathBuf>,
    ) -> RunnerConfig {
        RunnerConfig {
            url: url.into(),
            token: token.into(),
            name: name.into(),
            labels,
            work_dir: work_dir.into(),
            concurrency: 1,
            heartbeat_interval: Duration::from_secs(HEARTBEAT_SECS),
            lease: Duration::from_secs(LEASE_SECS),
            claim_wait: Duration::from_secs(CLAIM_WAIT_SECS),
            log_flush_interval: Duration::from_millis(200),
            kill_grace: Duration::from_secs(5),
            abort: CancellationToken::new(),
        }
    }
}

impl std::fmt::Debug for RunnerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunnerConfig")
            .field("url", &self.url)
            .field("token", &"***")
            .field("name", &self.name)
            .field("labels", &self.labels)
            .field("work_dir", &self.work_dir)
            .field("concurrency", &self.concurrency)
            .field("heartbeat_interval", &self.heartbeat_interval)
            .field("lease", &self.lease)
            .field("claim_wait", &self.claim_wait)
            .field("log_flush_interval", &self.log_flush_interval)
            .field("kill_grace", &self.kill_grace)
            .finish_non_exhaustive()
    }
}

/// A registered runner, shared by its claim loops and jobs.
struct Runner {
    client: Client,
    /// Changes only when the server has forgotten the runner and it registers again.
    id: Mutex<Uuid>,
    config: RunnerConfig,
}

impl Runner {
    fn id(&self) -> Uuid {
        *self
            .id
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn request(&self) -> RegisterRequest {
        RegisterRequest {
            name: self.config.name.clone(),
            labels: self.config.labels.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }

    /// Registers again, after a claim answered 404 (the server no longer knows this runner).
    async fn register_again(&self) -> Result<(), ClientError> {
        let registered = self.client.register(&self.request()).await?;
        tracing::info!(runner_id = %registered.runner_id, "registered again");
        *self
            .id
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = registered.runner_id;
        Ok(())
    }

    /// Fails a claimed job this runner cannot read, instead of holding it until its lease runs out.
    async fn refuse(
        &self,
        runner_id: Uuid,
        job_id: Option<Uuid>,
        attempt: Option<i32>,
        reason: String,
    ) {
        let (Some(job_id), Some(attempt)) = (job_id, attempt) else {
            tracing::error!(reason, "claimed a job that cannot be read or reported");
            return;
        };
        tracing::error!(%job_id, reason, "claimed a job that cannot be read; failing it");
        let request = FinishRequest {
            runner_id,
            attempt,
            outcome: Outcome::Failed,
            exit_code: None,
            reason: Some(format!(
                "runner `{}` (version {}) cannot read this job: {reason}",
                self.config.name,
                env!("CARGO_PKG_VERSION")
            )),
        };
        if let Err(error) = self.client.finish(job_id, &request).await {
            tracing::warn!(%job_id, %error, "cannot fail the unreadable job");
        }
    }
}

/// Registers with the server and runs jobs until `stop` (see the module doc). Fails when the
/// configuration is unusable or the server refuses the token; an unreachable server is waited for.
pub async fn run(mut config: RunnerConfig, stop: CancellationToken) -> anyhow::Result<()> {
    anyhow::ensure!(config.concurrency > 0, "the concurrency must be at least 1");
    tokio::fs::create_dir_all(&config.work_dir)
        .await
        .with_context(|| {
            format!(
                "cannot create the work directory {}",
                config.work_dir.display()
            )
        })?;
    config.work_dir = tokio::fs::canonicalize(&config.work_dir).await?;
    let client = Client::new(
        &config.url,
        &config.token,
        config.claim_wait,
        config.heartbeat_interval,
        config.lease,
    )?;
    // Ours to cancel when a claim loop fails, without touching the caller's token.
    let stop = stop.child_token();
    let mut runner = Runner {
        client,
        id: Mutex::new(Uuid::nil()),
        config,
    };
    let request = runner.request();
    let registered = tokio::select! {
        biased;
        () = stop.cancelled() => return Ok(()),
        () = runner.config.abort.cancelled() => return Ok(()),
        registered = runner.client.register(&request) => {
            registered.context("cannot register with the server")?
        }
    };
    let config = &runner.config;
    tracing::info!(
        runner_id = %registered.runner_id,
        name = %config.name,
        labels = %config.labels.join(","),
        work_dir = %config.work_dir.display(),
        concurrency = config.concurrency,
        "registered; waiting for jobs"
    );
    *runner
        .id
        .get_mut()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = registered.runner_id;
    let runner = Arc::new(runner);
    let mut loops = JoinSet::new();
    for slot in 0..runner.config.concurrency {
        loops.spawn(claim_loop(runner.clone(), slot, stop.clone()));
    }
    let mut failure = None;
    while let Some(ended) = loops.join_next().await {
        let error = match ended {
            Ok(Ok(())) => continue,
            Ok(Err(error)) => error,
            Err(panic) => anyhow::anyhow!("a claim loop failed: {panic}"),
        };
        tracing::error!("{error:#}; stopping");
        stop.cancel();
        failure.get_or_insert(error);
    }
    tracing::info!("runner stopped");
    failure.map_or(Ok(()), Err)
}

async fn claim_loop(
    runner: Arc<Runner>,
    slot: usize,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let mut backoff = Duration::from_secs(1);
    loop {
        let runner_id = runner.id();
        let claimed = tokio::select! {
            biased;
            () = stop.cancelled() => return Ok(()),
            () = runner.config.abort.cancelled() => return Ok(()),
            claimed = runner.client.claim(runner_id) => claimed,
        };
        let error = match claimed {
            Ok(Some(job)) => {
                backoff = Duration::from_secs(1);
                execute::run_job(runner.clone(), runner_id, job).await;
                continue;
            }
            Ok(None) => {
                backoff = Duration::from_secs(1);
                continue;
            }
            Err(error @ ClientError::Unauthorized(_)) => return Err(error.into()),
            Err(ClientError::UnreadableJob {
                job_id,
                attempt,
                reason,
            }) => {
                runner.refuse(runner_id, job_id, attempt, reason).await;
                continue;
            }
            Err(ClientError::Status {
                status: StatusCode::NOT_FOUND,
                ..
            }) => {
                if runner.id() != runner_id {
                    // Another claim loop has registered again already.
                    continue;
                }
                tracing::warn!("the server does not know this runner; registering again");
                let registered = tokio::select! {
                    () = stop.cancelled() => return Ok(()),
                    () = runner.config.abort.cancelled() => return Ok(()),
                    registered = runner.register_again() => registered,
                };
                match registered {
                    Ok(()) => continue,
                    Err(error @ ClientError::Unauthorized(_)) => return Err(error.into()),
                    Err(error) => error,
                }
            }
            Err(error) => error,
        };
        tracing::warn!(%error, slot, "cannot claim a job; asking again in {backoff:?}");
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            () = runner.config.abort.cancelled() => return Ok(()),
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_CLAIM_BACKOFF);
    }
}
