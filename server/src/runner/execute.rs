//! Running one claimed job: check out, run the steps, upload the artifacts, report the end.
//!
//! Every process (git, and each step's `bash -e -o pipefail -c <run>`) starts in a process group
//! of its own, so stopping it reaches everything it started: SIGTERM to the group, then SIGKILL
//! to whatever is left after the grace period. That happens when the job's time is up, when a
//! person cancels it (a heartbeat answers `cancel: true`), when the server says the lease is
//! lost (a 409 on any call), when the runner is aborted, and also after a step ends on its own:
//! a step's background processes do not outlive it (start a service in the step that uses it).
//!
//! The log shows what happened:
//!
//! ```text
//! system  ▶ Unit tests
//! stdout  running 12 tests
//! system  ✗ Unit tests exited with 101 (3.4 s)
//! ```
//!
//! | how the job ends        | finish sent                                           |
//! |-------------------------|-------------------------------------------------------|
//! | every step exits 0, artifacts uploaded | succeeded, exit code 0                 |
//! | a step exits non-zero   | failed, its code, "step `Unit tests` exited with 101" |
//! | a step is killed by a signal | failed, no code, "step `x` was killed by signal SIGSEGV" |
//! | out of time             | failed, "timed out after 10m"                         |
//! | a declared artifact is missing | failed, "artifact `web` not found at dist/web" |
//! | canceled by a person    | canceled                                              |
//! | lease lost (409)        | nothing: the job is no longer ours                    |
//! | runner aborted          | nothing: the server retries it when the lease runs out |

use super::Runner;
use super::client::{ArtifactUpload, Client, ClientError};
use super::logs::{self, LogSink, Masker, SendFailure};
use super::workspace::{CheckoutError, ResolveError, Workspace, display_repository};
use domain::run::protocol::{
    ClaimedJob, FinishRequest, HeartbeatRequest, LogBatch, LogLine, Outcome, Stream,
};
use domain::run::spec::ArtifactWire;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

/// Used when the runner itself has no PATH.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// How often a group being stopped is looked at.
const GROUP_POLL: Duration = Duration::from_millis(20);
/// How long SIGKILL may take to empty a group (a process in uninterruptible I/O lingers).
const KILL_WAIT: Duration = Duration::from_secs(2);
/// How long a process's output may keep arriving after its group is gone: only a process that
/// left the group (a daemon calling setsid) can still hold the pipe open, and it is not waited for.
const OUTPUT_DRAIN: Duration = Duration::from_secs(2);

/// Why a job stops before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Its `timeout_secs` ran out.
    TimedOut,
    /// A person canceled it.
    Canceled,
    /// The server no longer holds it for this runner.
    LeaseLost,
    /// The runner is shutting down without waiting.
    Aborted,
}

/// What can stop a job: its deadline and three signals. Cheap to clone; every clone sees the same
/// signals.
#[derive(Debug, Clone)]
pub struct Watch {
    deadline: Instant,
    timeout: Duration,
    /// A person canceled the job (a heartbeat said so).
    pub canceled: CancellationToken,
    /// The server answered 409, or accepted no heartbeat for a whole lease.
    pub lease_lost: CancellationToken,
    /// The runner is shutting down without waiting for its jobs.
    pub abort: CancellationToken,
}

impl Watch {
    pub fn new(timeout: Duration, abort: CancellationToken) -> Watch {
        Watch {
            deadline: Instant::now() + timeout,
            timeout,
            canceled: CancellationToken::new(),
            lease_lost: CancellationToken::new(),
            abort,
        }
    }

    /// Resolves when the job must stop. When several reasons hold at once, the lease comes first
    /// (nothing may be reported then), then the abort, then a cancel, then the deadline.
    pub async fn stopped(&self) -> Stop {
        tokio::select! {
            biased;
            () = self.lease_lost.cancelled() => Stop::LeaseLost,
            () = self.abort.cancelled() => Stop::Aborted,
            () = self.canceled.cancelled() => Stop::Canceled,
            () = tokio::time::sleep_until(self.deadline) => Stop::TimedOut,
        }
    }
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl Exit {
    pub fn code(self) -> Option<i32> {
        match self {
            Exit::Code(code) => Some(code),
            Exit::Signal(_) => None,
        }
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Exit::Code(code) => write!(f, "exited with {code}"),
            Exit::Signal(number) => match Signal::try_from(number) {
                Ok(signal) => write!(f, "was killed by signal {}", signal.as_str()),
                Err(_) => write!(f, "was killed by signal {number}"),
            },
        }
    }
}

/// A command to run with nothing of the runner's environment but `env`.
pub struct Process<'a> {
    pub program: &'a str,
    pub args: Vec<String>,
    pub cwd: &'a Path,
    pub env: &'a [(String, String)],
}

#[derive(Debug)]
pub enum RunError {
    Stopped(Stop),
    /// It could not be started or waited for.
    Io(io::Error),
}

/// Runs `process` in a new process group, its stdout and stderr going to `sink` line by line,
/// until it exits or `watch` says stop. Either way, what is left of its group is stopped before
/// this returns (SIGTERM, then SIGKILL after `kill_grace`).
pub async fn run_process(
    process: Process<'_>,
    sink: &LogSink,
    watch: &Watch,
    kill_grace: Duration,
) -> Result<Exit, RunError> {
    let mut command = tokio::process::Command::new(process.program);
    command
        .args(&process.args)
        .current_dir(process.cwd)
        .env_clear()
        .envs(process.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = command.spawn().map_err(RunError::Io)?;
    let pid = child.id().expect("a child just spawned has a pid");
    let mut group = ProcessGroup::new(pid);
    let mut readers = Vec::with_capacity(2);
    if let Some(stdout) = child.stdout.take() {
        readers.push(tokio::spawn(logs::read_lines(
            stdout,
            Stream::Stdout,
            sink.clone(),
        )));
    }
    if let Some(stderr) = child.stderr.take() {
        readers.push(tokio::spawn(logs::read_lines(
            stderr,
            Stream::Stderr,
            sink.clone(),
        )));
    }

    let ended = tokio::select! {
        status = child.wait() => Ok(status),
        stop = watch.stopped() => Err(stop),
    };
    group.stop(kill_grace).await;
    let result = match ended {
        Ok(Ok(status)) => Ok(exit_of(status)),
        Ok(Err(error)) => Err(RunError::Io(error)),
        Err(stop) => {
            // Reap the group's leader; it is dead by now.
            let _ = child.wait().await;
            Err(RunError::Stopped(stop))
        }
    };
    let drained =
        tokio::time::timeout(OUTPUT_DRAIN, futures::future::join_all(readers.iter_mut())).await;
    if drained.is_err() {
        tracing::warn!("a process that left its step's process group still holds its output open");
        readers.iter().for_each(|reader| reader.abort());
    }
    result
}

fn exit_of(status: std::process::ExitStatus) -> Exit {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => Exit::Code(code),
        (None, Some(signal)) => Exit::Signal(signal),
        (None, None) => Exit::Code(-1),
    }
}

/// The process group a step runs in. Dropped without [`stop`](Self::stop) (the job's future was
/// dropped), it sends SIGKILL to the group, so no process outlives its job.
struct ProcessGroup {
    pgid: i32,
    live: bool,
}

impl ProcessGroup {
    fn new(leader: u32) -> ProcessGroup {
        ProcessGroup {
            pgid: leader as i32,
            live: true,
        }
    }

    fn signal(&self, signal: Signal) {
        let _ = killpg(Pid::from_raw(self.pgid), signal);
    }

    /// SIGTERM to every process in the group, then SIGKILL to those left after `grace`; returns
    /// once none is left (or after [`KILL_WAIT`] more, for a process stuck in the kernel).
    async fn stop(&mut self, grace: Duration) {
        if group_is_empty(self.pgid) {
            self.live = false;
            return;
        }
        self.signal(Signal::SIGTERM);
        // A stopped process acts on SIGTERM only once continued.
        self.signal(Signal::SIGCONT);
        if !wait_until_empty(self.pgid, grace).await {
            tracing::debug!(pgid = self.pgid, "still running after SIGTERM: SIGKILL");
            self.signal(Signal::SIGKILL);
            if !wait_until_empty(self.pgid, KILL_WAIT).await {
                tracing::warn!(pgid = self.pgid, "processes survived SIGKILL");
            }
        }
        self.live = false;
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if self.live {
            self.signal(Signal::SIGKILL);
        }
    }
}

async fn wait_until_empty(pgid: i32, limit: Duration) -> bool {
    let until = Instant::now() + limit;
    loop {
        if group_is_empty(pgid) {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(GROUP_POLL).await;
    }
}

/// Whether no live process is in the group `pgid`. Zombies do not count: they run nothing, and
/// one whose parent is gone waits for an init that may never reap it (in a container). Read from
/// /proc; where there is none, a signal 0 to the group answers (counting zombies).
pub fn group_is_empty(pgid: i32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return killpg(Pid::from_raw(pgid), None).is_err();
    };
    !entries.flatten().any(|entry| {
        let name = entry.file_name();
        let Some(pid) = name.to_str().filter(|n| n.bytes().all(|b| b.is_ascii_digit())) else {
            return false;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return false;
        };
        matches!(parse_stat(&stat), Some((state, group)) if group == pgid && state != 'Z' && state != 'X')
    })
}

/// The state and process group from a `/proc/<pid>/stat` line. The command name may contain
/// spaces and parentheses, so fields are counted from the last `)`.
fn parse_stat(stat: &str) -> Option<(char, i32)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((state, pgrp))
}

/// What the job's end is reported as.
#[derive(Debug)]
enum Ending {
    Finish {
        outcome: Outcome,
        exit_code: Option<i32>,
        reason: Option<String>,
    },
    LeaseLost,
    Aborted,
}

impl Ending {
    fn failed(exit_code: Option<i32>, reason: String) -> Ending {
        Ending::Finish {
            outcome: Outcome::Failed,
            exit_code,
            reason: Some(reason),
        }
    }
}

/// Runs a claimed job to its end and reports it. Never fails: every problem becomes the job's
/// outcome or, when the server is unreachable, a log message (the lease then runs out).
pub(super) async fn run_job(runner: Arc<Runner>, runner_id: Uuid, job: ClaimedJob) {
    let span = tracing::info_span!(
        "job",
        job_id = %job.job_id,
        attempt = job.attempt,
        project = %job.project,
        run = job.run_number,
        job = %job.job_name,
    );
    execute_job(runner, runner_id, job).instrument(span).await;
}

async fn execute_job(runner: Arc<Runner>, runner_id: Uuid, job: ClaimedJob) {
    tracing::info!(commit = %job.commit_sha, "job claimed");
    let config = &runner.config;
    let masker = Arc::new(Masker::new(job.secrets.values().map(String::as_str)));
    let (sink, lines) = logs::channel(masker);
    let watch = Watch::new(
        Duration::from_secs(job.spec.timeout_secs),
        config.abort.clone(),
    );
    let shipper = tokio::spawn(
        logs::ship(
            lines,
            config.log_flush_interval,
            log_sender(&runner.client, runner_id, &job, watch.lease_lost.clone()),
        )
        .in_current_span(),
    );
    let heartbeat = tokio::spawn(
        heartbeat(
            runner.client.clone(),
            job.job_id,
            HeartbeatRequest {
                runner_id,
                attempt: job.attempt,
            },
            config.heartbeat_interval,
            config.lease,
            watch.clone(),
        )
        .in_current_span(),
    );

    let (workspace, ending) =
        match Workspace::create(&config.work_dir, job.job_id, job.attempt).await {
            Ok(workspace) => {
                let context = Context {
                    runner: &runner,
                    runner_id,
                    job: &job,
                    workspace: &workspace,
                    sink: &sink,
                    watch: &watch,
                };
                let ending = steps(&context).await;
                (Some(workspace), ending)
            }
            Err(error) => {
                let reason = format!(
                    "cannot make a workspace under {}: {error}",
                    config.work_dir.display()
                );
                sink.system(format!("✗ {reason}")).await;
                (None, Ending::failed(None, reason))
            }
        };
    if matches!(ending, Ending::Aborted) {
        sink.system(
            "The runner is shutting down: this job is left for the server to retry when its lease runs out.",
        )
        .await;
    }
    drop(sink);
    let _ = shipper.await;

    match ending {
        Ending::Finish {
            outcome,
            exit_code,
            reason,
        } if !watch.lease_lost.is_cancelled() => {
            let request = FinishRequest {
                runner_id,
                attempt: job.attempt,
                outcome,
                exit_code,
                reason: reason.clone(),
            };
            match runner.client.finish(job.job_id, &request).await {
                Ok(()) => tracing::info!(?outcome, reason, "job finished"),
                Err(ClientError::LeaseLost) => {
                    tracing::warn!("the server no longer held the job when it finished");
                }
                Err(error) => tracing::error!(
                    %error,
                    "cannot report the job's end; the server retries or fails it when the lease runs out"
                ),
            }
        }
        Ending::Finish { .. } | Ending::LeaseLost => tracing::warn!(
            "the server no longer holds this job for this runner: stopped it without finishing it"
        ),
        Ending::Aborted => tracing::info!("job stopped unfinished: the runner is shutting down"),
    }
    heartbeat.abort();

    if let Some(workspace) = workspace {
        let path = workspace.path().to_owned();
        match workspace.remove().await {
            Ok(()) => tracing::debug!(path = %path.display(), "workspace removed"),
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "cannot remove the workspace")
            }
        }
    }
}

/// Sends a batch to the server; a 409 marks the lease lost, which stops the job.
fn log_sender(
    client: &Client,
    runner_id: Uuid,
    job: &ClaimedJob,
    lease_lost: CancellationToken,
) -> impl FnMut(Vec<LogLine>) -> futures::future::BoxFuture<'static, Result<(), SendFailure>> + use<>
{
    let client = client.clone();
    let (job_id, attempt) = (job.job_id, job.attempt);
    // Numbering lines here makes a batch retried after a lost answer land once.
    let mut next_line = 1i32;
    move |lines| {
        let client = client.clone();
        let lease_lost = lease_lost.clone();
        let first_line = next_line;
        next_line += lines.len() as i32;
        Box::pin(async move {
            let batch = LogBatch {
                runner_id,
                attempt,
                first_line: Some(first_line),
                lines,
            };
            match client.logs(job_id, &batch).await {
                Ok(()) => Ok(()),
                Err(ClientError::LeaseLost) => {
                    lease_lost.cancel();
                    Err(SendFailure::LeaseLost)
                }
                Err(error) => Err(SendFailure::Other(error.to_string())),
            }
        })
    }
}

/// Renews the lease every `every` until aborted. A `cancel: true` answer cancels the job; a 409,
/// or no heartbeat accepted for a whole `lease` (the server has given the job away by then, or
/// will when it is back), marks the lease lost.
async fn heartbeat(
    client: Client,
    job_id: Uuid,
    request: HeartbeatRequest,
    every: Duration,
    lease: Duration,
    watch: Watch,
) {
    let mut last_accepted = Instant::now();
    let mut ticks = tokio::time::interval_at(Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match client.heartbeat(job_id, &request).await {
            Ok(response) => {
                last_accepted = Instant::now();
                if response.cancel && !watch.canceled.is_cancelled() {
                    tracing::info!("the job was canceled: stopping it");
                    watch.canceled.cancel();
                }
            }
            Err(ClientError::LeaseLost) => {
                tracing::warn!("heartbeat refused with 409: the lease is lost");
                watch.lease_lost.cancel();
                return;
            }
            Err(error) if last_accepted.elapsed() >= lease => {
                tracing::warn!(%error, "no heartbeat accepted for a whole lease: giving the job up");
                watch.lease_lost.cancel();
                return;
            }
            Err(error) => tracing::warn!(%error, "heartbeat not accepted"),
        }
    }
}

/// One job under way, as the functions running it see it.
struct Context<'a> {
    runner: &'a Runner,
    /// The id the job was claimed with.
    runner_id: Uuid,
    job: &'a ClaimedJob,
    workspace: &'a Workspace,
    sink: &'a LogSink,
    watch: &'a Watch,
}

async fn steps(context: &Context<'_>) -> Ending {
    let Context {
        runner,
        job,
        workspace,
        sink,
        watch,
        ..
    } = *context;
    let grace = runner.config.kill_grace;
    sink.system(format!(
        "Job `{}` of {} run #{}, attempt {}, on runner `{}`",
        job.job_name, job.project, job.run_number, job.attempt, runner.config.name
    ))
    .await;
    sink.system(format!(
        "Workspace {} (removed when the job ends)",
        workspace.path().display()
    ))
    .await;

    let short = &job.commit_sha[..job.commit_sha.len().min(12)];
    sink.system(format!(
        "▶ Check out {short} ({}) from {}",
        job.branch,
        display_repository(&job.repository)
    ))
    .await;
    let started = Instant::now();
    match workspace
        .checkout(
            &job.repository,
            &job.commit_sha,
            &base_env(),
            sink,
            watch,
            grace,
        )
        .await
    {
        Ok(()) => {
            sink.system(format!("✓ Check out ({})", seconds(started)))
                .await;
        }
        Err(CheckoutError::Stopped(stop)) => {
            return stopped(sink, "Check out", stop, started, watch).await;
        }
        Err(error) => {
            sink.system(format!("✗ Check out: {error} ({})", seconds(started)))
                .await;
            return Ending::failed(None, format!("cannot check out {short}: {error}"));
        }
    }

    let env = job_env(job, workspace.path());
    for step in &job.spec.steps {
        sink.system(format!("▶ {}", step.name)).await;
        let started = Instant::now();
        let process = Process {
            program: "bash",
            args: ["-e", "-o", "pipefail", "-c", &step.run]
                .map(String::from)
                .into(),
            cwd: workspace.path(),
            env: &env,
        };
        match run_process(process, sink, watch, grace).await {
            Ok(Exit::Code(0)) => {
                sink.system(format!("✓ {} ({})", step.name, seconds(started)))
                    .await;
            }
            Ok(exit) => {
                sink.system(format!("✗ {} {exit} ({})", step.name, seconds(started)))
                    .await;
                return Ending::failed(
                    exit.code(),
                    sink.mask(&format!("step `{}` {exit}", step.name))
                        .into_owned(),
                );
            }
            Err(RunError::Stopped(stop)) => {
                return stopped(sink, &step.name, stop, started, watch).await;
            }
            Err(RunError::Io(error)) => {
                let reason = format!("step `{}` could not start bash: {error}", step.name);
                sink.system(format!("✗ {reason}")).await;
                return Ending::failed(None, sink.mask(&reason).into_owned());
            }
        }
    }

    for (index, artifact) in job.spec.artifacts.iter().enumerate() {
        if let Err(ending) = upload(context, index, artifact).await {
            return ending;
        }
    }
    Ending::Finish {
        outcome: Outcome::Succeeded,
        exit_code: Some(0),
        reason: None,
    }
}

/// The log line and the ending for a job stopped during `what`.
async fn stopped(
    sink: &LogSink,
    what: &str,
    stop: Stop,
    started: Instant,
    watch: &Watch,
) -> Ending {
    match stop {
        Stop::TimedOut => {
            let reason = format!("timed out after {}", human_duration(watch.timeout));
            sink.system(format!("✗ {what}: {reason} ({})", seconds(started)))
                .await;
            Ending::failed(None, reason)
        }
        Stop::Canceled => {
            sink.system(format!("✗ {what}: canceled ({})", seconds(started)))
                .await;
            Ending::Finish {
                outcome: Outcome::Canceled,
                exit_code: None,
                reason: Some(sink.mask(&format!("canceled during `{what}`")).into_owned()),
            }
        }
        Stop::LeaseLost => Ending::LeaseLost,
        Stop::Aborted => Ending::Aborted,
    }
}

/// Uploads one declared artifact: a file as it is, a directory as a .tar.gz of its contents.
async fn upload(
    context: &Context<'_>,
    index: usize,
    artifact: &ArtifactWire,
) -> Result<(), Ending> {
    let Context {
        runner,
        runner_id,
        job,
        workspace,
        sink,
        watch,
    } = *context;
    let started = Instant::now();
    let name = &artifact.name;
    let fail = |reason: String| async move {
        sink.system(format!("✗ {reason}")).await;
        Ending::failed(None, reason)
    };
    let path = match workspace.resolve(&artifact.path) {
        Ok(path) => path,
        Err(ResolveError::NotFound) => {
            return Err(fail(format!("artifact `{name}` not found at {}", artifact.path)).await);
        }
        Err(error) => {
            return Err(fail(format!("artifact `{name}` at {}: {error}", artifact.path)).await);
        }
    };
    let metadata = match tokio::fs::metadata(&path).await {
        Ok(metadata) => metadata,
        Err(error) => {
            return Err(fail(format!("artifact `{name}` at {}: {error}", artifact.path)).await);
        }
    };
    // A download is named for the declared path's last part, `.tar.gz` added for a directory.
    let base = Path::new(&artifact.path)
        .file_name()
        .map_or_else(|| name.clone(), |n| n.to_string_lossy().into_owned());
    let (file, packed): (PathBuf, bool) = if metadata.is_dir() {
        let archive = workspace.scratch().join(format!("artifact-{index}.tar.gz"));
        let (from, to) = (path.clone(), archive.clone());
        let packing = tokio::task::spawn_blocking(move || pack_directory(&from, &to));
        let packed = tokio::select! {
            biased;
            stop = watch.stopped() => {
                return Err(stopped(sink, &format!("artifact `{name}`"), stop, started, watch).await);
            }
            packed = packing => packed,
        };
        match packed {
            Ok(Ok(skipped)) => {
                for entry in skipped {
                    sink.system(format!(
                        "  artifact `{name}`: left out {entry} (not a file, directory or link)"
                    ))
                    .await;
                }
            }
            Ok(Err(error)) => {
                return Err(fail(format!(
                    "cannot pack artifact `{name}` ({}): {error}",
                    artifact.path
                ))
                .await);
            }
            Err(error) => {
                return Err(fail(format!(
                    "cannot pack artifact `{name}` ({}): {error}",
                    artifact.path
                ))
                .await);
            }
        }
        (archive, true)
    } else if metadata.is_file() {
        (path, false)
    } else {
        return Err(fail(format!(
            "artifact `{name}` at {} is neither a file nor a directory",
            artifact.path
        ))
        .await);
    };
    let size = tokio::fs::metadata(&file)
        .await
        .map(|m| m.len())
        .unwrap_or(0);
    let file_name = if packed {
        format!("{base}.tar.gz")
    } else {
        base
    };
    let upload = ArtifactUpload {
        runner_id,
        attempt: job.attempt,
        name,
        file_name: &file_name,
        gzip: packed,
        path: &file,
    };
    let uploaded = tokio::select! {
        biased;
        stop = watch.stopped() => {
            return Err(stopped(sink, &format!("artifact `{name}`"), stop, started, watch).await);
        }
        uploaded = runner.client.upload_artifact(job.job_id, &upload) => uploaded,
    };
    match uploaded {
        Ok(()) => {
            let form = if packed { " as .tar.gz" } else { "" };
            sink.system(format!(
                "↑ artifact `{name}`: {} ({}{form}, {})",
                artifact.path,
                human_bytes(size),
                seconds(started)
            ))
            .await;
            Ok(())
        }
        Err(ClientError::LeaseLost) => Err(Ending::LeaseLost),
        Err(error) => Err(fail(format!("cannot upload artifact `{name}`: {error}")).await),
    }
}

/// Writes `dir`'s contents (not the directory itself) as a gzipped tar to `into`. Entries are in
/// name order with fixed times and owners, so the same tree always gives the same bytes (and the
/// same sha256). Symbolic links are stored as links, never followed. Returns what was left out:
/// sockets, fifos and devices.
pub fn pack_directory(dir: &Path, into: &Path) -> io::Result<Vec<String>> {
    let file = std::fs::File::create(into)?;
    let gzip =
        flate2::write::GzEncoder::new(io::BufWriter::new(file), flate2::Compression::default());
    let mut archive = tar::Builder::new(gzip);
    archive.mode(tar::HeaderMode::Deterministic);
    archive.follow_symlinks(false);
    let mut skipped = Vec::new();
    append_sorted(&mut archive, dir, Path::new(""), &mut skipped)?;
    let mut writer = archive.into_inner()?.finish()?;
    io::Write::flush(&mut writer)?;
    writer
        .into_inner()
        .map_err(|e| e.into_error())?
        .sync_all()?;
    Ok(skipped)
}

fn append_sorted<W: io::Write>(
    archive: &mut tar::Builder<W>,
    dir: &Path,
    relative: &Path,
    skipped: &mut Vec<String>,
) -> io::Result<()> {
    let mut entries = std::fs::read_dir(dir)?.collect::<Result<Vec<_>, _>>()?;
    entries.sort_by_key(|entry| entry.file_name());
    for entry in entries {
        let path = entry.path();
        let name = relative.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_dir() {
            archive.append_dir(&name, &path)?;
            append_sorted(archive, &path, &name, skipped)?;
        } else if kind.is_file() || kind.is_symlink() {
            archive.append_path_with_name(&path, &name)?;
        } else {
            skipped.push(name.display().to_string());
        }
    }
    Ok(())
}

/// PATH, HOME and LANG from the runner's own environment: what every process gets.
pub fn base_env() -> Vec<(String, String)> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let mut env = vec![(
        "PATH".to_string(),
        var("PATH").unwrap_or_else(|| DEFAULT_PATH.to_string()),
    )];
    if let Some(home) = var("HOME") {
        env.push(("HOME".into(), home));
    }
    env.push((
        "LANG".into(),
        var("LANG").unwrap_or_else(|| "C.UTF-8".into()),
    ));
    env
}

/// A step's environment: [`base_env`], then the job's own variables, then the spec's `env`, then
/// the secrets; a later one wins. A name no process could receive (empty, or holding `=` or a NUL
/// byte) is left out.
fn job_env(job: &ClaimedJob, workspace: &Path) -> Vec<(String, String)> {
    let mut env: BTreeMap<String, String> = base_env().into_iter().collect();
    let own = [
        ("CI", "true".to_string()),
        ("FLIGHTDECK", "true".to_string()),
        ("FLIGHTDECK_PROJECT", job.project.clone()),
        ("FLIGHTDECK_RUN", job.run_number.to_string()),
        ("FLIGHTDECK_JOB", job.job_name.clone()),
        ("FLIGHTDECK_ATTEMPT", job.attempt.to_string()),
        ("FLIGHTDECK_COMMIT", job.commit_sha.clone()),
        ("FLIGHTDECK_BRANCH", job.branch.clone()),
        ("FLIGHTDECK_WORKSPACE", workspace.display().to_string()),
    ];
    env.extend(own.map(|(k, v)| (k.to_string(), v)));
    env.extend(job.spec.env.clone());
    env.extend(job.secrets.clone());
    env.into_iter()
        .filter(|(name, value)| {
            let fits = !name.is_empty() && !name.contains(['=', '\0']) && !value.contains('\0');
            if !fits {
                tracing::warn!(name, "left out of the environment: not a valid variable");
            }
            fits
        })
        .collect()
}

/// "1.2 s".
fn seconds(since: Instant) -> String {
    format!("{:.1} s", since.elapsed().as_secs_f64())
}

/// "10m", "1h30m", "45s", "2m5s".
pub fn human_duration(duration: Duration) -> String {
    let total = duration.as_secs();
    let (hours, minutes, secs) = (total / 3600, total / 60 % 60, total % 60);
    let mut text = String::new();
    if hours > 0 {
        text += &format!("{hours}h");
    }
    if minutes > 0 {
        text += &format!("{minutes}m");
    }
    if secs > 0 || text.is_empty() {
        text += &format!("{secs}s");
    }
    text
}

/// "812 B", "12.3 KiB", "4.0 MiB".
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    fn sink() -> (LogSink, mpsc::Receiver<LogLine>) {
        logs::channel(Arc::new(Masker::new(["s3cret-value"])))
    }

    async fn bash(script: &str, watch: &Watch) -> (Result<Exit, RunError>, Vec<LogLine>) {
        let (sink, mut rx) = sink();
        let dir = tempfile::tempdir().unwrap();
        let env = base_env();
        let process = Process {
            program: "bash",
            args: ["-e", "-o", "pipefail", "-c", script]
                .map(String::from)
                .into(),
            cwd: dir.path(),
            env: &env,
        };
        let result = run_process(process, &sink, watch, Duration::from_millis(300)).await;
        drop(sink);
        let mut lines = Vec::new();
        while let Some(line) = rx.recv().await {
            lines.push(line);
        }
        (result, lines)
    }

    fn watch(timeout: Duration) -> Watch {
        Watch::new(timeout, CancellationToken::new())
    }

    #[tokio::test]
    async fn stdout_and_stderr_are_streams_of_their_own_and_secrets_are_masked() {
        let (result, lines) = bash(
            "echo out s3cret-value; echo err >&2",
            &watch(Duration::from_secs(10)),
        )
        .await;
        assert_eq!(result.unwrap(), Exit::Code(0));
        assert!(lines.contains(&LogLine {
            stream: Stream::Stdout,
            text: "out ***".into()
        }));
        assert!(lines.contains(&LogLine {
            stream: Stream::Stderr,
            text: "err".into()
        }));
    }

    #[tokio::test]
    async fn errexit_and_pipefail_are_on() {
        let w = watch(Duration::from_secs(10));
        let (result, lines) = bash("false; echo after", &w).await;
        assert_eq!(result.unwrap(), Exit::Code(1));
        assert!(lines.is_empty());
        let (result, _) = bash("false | true", &w).await;
        assert_eq!(result.unwrap(), Exit::Code(1));
        let (result, _) = bash("exit 7", &w).await;
        assert_eq!(result.unwrap(), Exit::Code(7));
    }

    #[tokio::test]
    async fn a_signal_death_is_reported_as_such() {
        let (result, _) = bash("kill -SEGV $$", &watch(Duration::from_secs(10))).await;
        let exit = result.unwrap();
        assert_eq!(exit, Exit::Signal(11));
        assert_eq!(exit.to_string(), "was killed by signal SIGSEGV");
    }

    #[tokio::test]
    async fn the_environment_is_clean() {
        let (result, lines) = bash(
            "echo ${CARGO_PKG_NAME:-unset} $LANG",
            &watch(Duration::from_secs(10)),
        )
        .await;
        assert_eq!(result.unwrap(), Exit::Code(0));
        assert!(lines[0].text.starts_with("unset "), "{:?}", lines[0]);
    }

    #[tokio::test]
    async fn background_processes_do_not_outlive_their_step_and_do_not_hold_it_up() {
        let dir = tempfile::tempdir().unwrap();
        let pids = dir.path().join("pids");
        let script = format!(
            "sleep 1000 & echo $! > {p}; (trap '' TERM; exec sleep 1000) & echo $! >> {p}; echo started",
            p = pids.display()
        );
        // Held up by its children, the step would run into the 10 s timeout instead.
        let (result, lines) = bash(&script, &watch(Duration::from_secs(10))).await;
        assert_eq!(result.unwrap(), Exit::Code(0));
        assert_eq!(lines.last().unwrap().text, "started");
        for pid in std::fs::read_to_string(&pids).unwrap().split_whitespace() {
            assert!(
                !alive(pid.parse().unwrap()),
                "process {pid} survived its step"
            );
        }
    }

    #[tokio::test]
    async fn a_timeout_stops_the_whole_group_even_a_process_ignoring_sigterm() {
        let dir = tempfile::tempdir().unwrap();
        let pgid_file = dir.path().join("pgid");
        let script = format!(
            "echo $$ > {}; (trap '' TERM; sleep 1000) & sleep 1000 & wait",
            pgid_file.display()
        );
        // Long enough for a loaded machine to start bash and write the file; the sleeps would
        // take 1000 s, so the step ends only by the timeout.
        let (result, _) = bash(&script, &watch(Duration::from_secs(3))).await;
        assert!(matches!(result, Err(RunError::Stopped(Stop::TimedOut))));
        let pgid: i32 = std::fs::read_to_string(&pgid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(group_is_empty(pgid));
    }

    #[tokio::test]
    async fn the_lease_wins_over_a_cancel_when_both_hold() {
        let w = watch(Duration::from_secs(10));
        w.canceled.cancel();
        w.lease_lost.cancel();
        assert_eq!(w.stopped().await, Stop::LeaseLost);
    }

    fn alive(pid: i32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => !matches!(parse_stat(&stat), Some(('Z' | 'X', _))),
            Err(_) => false,
        }
    }

    #[test]
    fn stat_lines_with_odd_command_names_parse() {
        assert_eq!(parse_stat("42 (a) b (c)) S 1 42 42 0 -1"), Some(('S', 42)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(human_duration(Duration::from_secs(600)), "10m");
        assert_eq!(human_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(human_duration(Duration::from_secs(125)), "2m5s");
        assert_eq!(human_duration(Duration::from_secs(1)), "1s");
        assert_eq!(human_duration(Duration::ZERO), "0s");
        assert_eq!(human_bytes(812), "812 B");
        assert_eq!(human_bytes(12_595), "12.3 KiB");
    }

    #[test]
    fn a_packed_directory_unpacks_to_the_same_tree_and_packs_the_same_twice() {
        let dir = tempfile::tempdir().unwrap();
        let web = dir.path().join("web");
        std::fs::create_dir_all(web.join("assets/img")).unwrap();
        std::fs::write(web.join("index.html"), "<h1>hi</h1>").unwrap();
        std::fs::write(web.join("assets/app.js"), "console.log(1)").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", web.join("link")).unwrap();
        let (one, two) = (dir.path().join("1.tar.gz"), dir.path().join("2.tar.gz"));
        assert!(pack_directory(&web, &one).unwrap().is_empty());
        pack_directory(&web, &two).unwrap();
        assert_eq!(std::fs::read(&one).unwrap(), std::fs::read(&two).unwrap());

        let out = dir.path().join("out");
        tar::Archive::new(flate2::read::GzDecoder::new(
            std::fs::File::open(&one).unwrap(),
        ))
        .unpack(&out)
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(out.join("index.html")).unwrap(),
            "<h1>hi</h1>"
        );
        assert_eq!(
            std::fs::read_to_string(out.join("assets/app.js")).unwrap(),
            "console.log(1)"
        );
        assert!(out.join("assets/img").is_dir());
        assert_eq!(
            std::fs::read_link(out.join("link")).unwrap(),
            Path::new("/etc/passwd")
        );
    }
}
