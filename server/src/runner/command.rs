//! `flightdeck runner`: a runner on its own, on this machine or another, until SIGTERM or Ctrl-C.

use super::{RunnerConfig, run};
use crate::config::default_data_dir;
use anyhow::Context;
use std::path::PathBuf;
use tokio_util::sync::CancellationToken;

/// Run jobs for a Flightdeck server: claims jobs whose labels this runner has and runs them.
/// The first SIGTERM or Ctrl-C stops taking jobs and waits for those under way; a second one
/// stops them too (the server retries them once their leases run out).
#[derive(clap::Args)]
pub struct RunnerArgs {
    /// The server to take jobs from, e.g. https://deploy.example.com.
    #[arg(long, env = "FLIGHTDECK_URL", value_name = "URL")]
    url: String,
    /// An API token with the `runner` scope (`flightdeck token create NAME --scope runner`).
    #[arg(
        long,
        env = "FLIGHTDECK_RUNNER_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    token: String,
    /// What this machine offers, comma-separated: a job runs here when all its `runs_on` labels
    /// are among them. [default: <os>,<arch>, e.g. linux,x86_64]
    #[arg(
        long,
        env = "FLIGHTDECK_RUNNER_LABELS",
        value_delimiter = ',',
        value_name = "LABELS"
    )]
    labels: Vec<String>,
    /// The runner's name, unique per machine. [default: the host name]
    #[arg(long, env = "FLIGHTDECK_RUNNER_NAME")]
    name: Option<String>,
    /// Where job workspaces are made. [default: <data dir>/runner]
    #[arg(long, env = "FLIGHTDECK_RUNNER_WORK_DIR", value_name = "DIR")]
    work_dir: Option<PathBuf>,
    /// How many jobs run at once.
    #[arg(long, env = "FLIGHTDECK_RUNNER_CONCURRENCY", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..))]
    concurrency: u16,
}

impl std::fmt::Debug for RunnerArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunnerArgs")
            .field("url", &self.url)
            .field("token", &"***")
            .field("labels", &self.labels)
            .field("name", &self.name)
            .field("work_dir", &self.work_dir)
            .field("concurrency", &self.concurrency)
            .finish()
    }
}

impl RunnerArgs {
    /// The settings, with defaults filled in. `data_dir` is the global `--data-dir`, if given.
    pub fn config(self, data_dir: Option<PathBuf>) -> anyhow::Result<RunnerConfig> {
        let labels: Vec<String> = self
            .labels
            .iter()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect();
        let labels = if labels.is_empty() {
            vec![
                std::env::consts::OS.to_string(),
                std::env::consts::ARCH.to_string(),
            ]
        } else {
            labels
        };
        let work_dir = match (self.work_dir, data_dir) {
            (Some(dir), _) => dir,
            (None, Some(data)) => data.join("runner"),
            (None, None) => default_data_dir()?.join("runner"),
        };
        let mut config = RunnerConfig::new(
            self.url,
            self.token,
            self.name.unwrap_or_else(crate::instance::host_name),
            labels,
            work_dir,
        );
        config.concurrency = self.concurrency.into();
        Ok(config)
    }
}

/// Runs until the process is told to stop (see [`RunnerArgs`]).
pub async fn run_until_signal(args: RunnerArgs, data_dir: Option<PathBuf>) -> anyhow::Result<()> {
    let config = args.config(data_dir)?;
    let stop = CancellationToken::new();
    let abort = config.abort.clone();
    let signals = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut terminate =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .context("cannot listen for SIGTERM")?;
            for (token, then) in [
                (
                    &stop,
                    "stopping: no new jobs; waiting for those under way (again to stop them too)",
                ),
                (&abort, "stopping the jobs under way"),
            ] {
                tokio::select! {
                    _ = terminate.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
                tracing::info!("{then}");
                token.cancel();
            }
            anyhow::Ok(())
        }
    });
    let result = run(config, stop).await;
    signals.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        runner: RunnerArgs,
    }

    fn parse(args: &[&str]) -> Result<RunnerConfig, String> {
        let cli =
            Cli::try_parse_from(["flightdeck"].iter().chain(args)).map_err(|e| e.to_string())?;
        cli.runner
            .config(Some(PathBuf::from("/data")))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_os_and_arch_labels_one_job_and_a_work_dir_under_the_data_dir() {
        let config = parse(&["--url", "http://h", "--token", "fdt_x", "--name", "box"]).unwrap();
        assert_eq!(
            config.labels,
            [std::env::consts::OS, std::env::consts::ARCH]
        );
        assert_eq!(config.concurrency, 1);
        assert_eq!(config.work_dir, PathBuf::from("/data/runner"));
        assert_eq!(config.name, "box");
    }

    #[test]
    fn labels_are_comma_separated_and_concurrency_is_at_least_one() {
        let config = parse(&[
            "--url",
            "http://h",
            "--token",
            "t",
            "--labels",
            "linux, android ,",
            "--concurrency",
            "3",
            "--work-dir",
            "/w",
        ])
        .unwrap();
        assert_eq!(config.labels, ["linux", "android"]);
        assert_eq!(config.concurrency, 3);
        assert_eq!(config.work_dir, PathBuf::from("/w"));
        assert!(parse(&["--url", "http://h", "--token", "t", "--concurrency", "0"]).is_err());
    }
}
