//! `flightdeck serve`: open the database, load the configured projects, start the background
//! services and serve HTTP until SIGTERM or Ctrl-C, then drain and stop cleanly.

use crate::config::DatabaseSetting;
use crate::database::Database;
use crate::flag_cache::FlagCache;
use crate::http::refusals::Refusals;
use crate::http::{self, AppState, AppStateParts};
use crate::live::LiveHub;
use anyhow::Context;
use axum::serve::ListenerExt;
use domain::audit::Origin;
use domain::auth::Scope;
use domain::flags::{FlagStore, SdkTokens};
use domain::portal::Portal;
use domain::project::{LoadDefinitionError, Loaded};
use domain::run::artifacts::LocalDisk;
use domain::run::work::Secrets;
use leptos::prelude::LeptosOptions;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How long in-flight requests may take to finish after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub addr: SocketAddr,
    /// The address people use (behind a proxy); `https://…` makes cookies `Secure`.
    pub public_url: Option<String>,
    pub projects: Vec<PathBuf>,
    pub site_root: PathBuf,
    pub database: DatabaseSetting,
    pub max_connections: u32,
    /// Artifacts and the built-in runner's workspaces live here.
    pub data_dir: PathBuf,
    /// Labels of the built-in runner; None turns it off.
    pub local_runner: Option<Vec<String>>,
    pub webhook_secret: Option<String>,
}

pub async fn serve(options: ServeOptions) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let database = Database::open(&options.database, options.max_connections).await?;
    if let Some(url) = database.embedded_url() {
        tracing::info!(%url, "using the embedded PostgreSQL");
    }
    let pool = database.pool.clone();
    for file in &options.projects {
        load_project_file(&pool, file).await?;
    }
    let secure_cookies = options
        .public_url
        .as_deref()
        .is_some_and(|u| u.starts_with("https://"));
    let artifacts = LocalDisk::new(options.data_dir.join("artifacts")).with_context(|| {
        format!(
            "cannot create {}",
            options.data_dir.join("artifacts").display()
        )
    })?;
    let portal = Portal::new(pool.clone(), secure_cookies, artifacts, Secrets::from_env());

    let listener = TcpListener::bind(options.addr)
        .await
        .with_context(|| format!("cannot listen on {}", options.addr))?;
    let addr = listener.local_addr()?;
    let public_url = options
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));

    let shutdown = CancellationToken::new();
    let stop_listener = CancellationToken::new();
    let live = LiveHub::start(pool.clone(), stop_listener.clone());
    let flags = FlagCache::start(
        FlagStore::new(pool.clone()),
        SdkTokens::new(pool.clone()),
        &live,
        stop_listener.clone(),
    )
    .await
    .context("cannot load the feature flags")?;
    // Stopped after the last request is answered, so it writes every refusal counted.
    let (refusals, refusal_writer) = Refusals::start(pool.clone(), stop_listener.clone());
    let access = Arc::new(http::access_table()?);
    let leptos_options = LeptosOptions::builder()
        .output_name("flightdeck")
        .site_root(options.site_root.to_string_lossy().to_string())
        .site_pkg_dir("pkg")
        .site_addr(addr)
        .build();
    let state = AppState::new(AppStateParts {
        leptos_options,
        portal: portal.clone(),
        live,
        flags,
        refusals,
        access,
        shutdown: shutdown.clone(),
        webhook_secret: options.webhook_secret.as_deref().map(Arc::from),
    });
    crate::engine::start(portal.clone(), shutdown.clone());

    let app = http::router(state);
    println!(
        "Flightdeck is listening on http://{addr} (ready in {} ms)",
        started.elapsed().as_millis()
    );
    match portal.users.create_setup_link().await? {
        Some(link) => println!(
            "No one can sign in yet. Open {public_url}/setup/{} to create the first admin \
             (valid for 24 hours, works once), or run `flightdeck user add NAME --role admin`.",
            link.expose()
        ),
        None => println!("Sign in at {public_url}/login"),
    }

    let runner_stop = CancellationToken::new();
    let runner_abort = CancellationToken::new();
    let local_runner = match &options.local_runner {
        Some(labels) => Some(
            start_local_runner(
                &portal,
                &addr,
                labels.clone(),
                &options.data_dir,
                runner_stop.clone(),
                runner_abort.clone(),
            )
            .await?,
        ),
        None => None,
    };

    // Pages stream in several writes; without TCP_NODELAY each waits out the client's delayed ACK.
    let listener = listener.tap_io(|tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY");
        }
    });
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown({
        let shutdown = shutdown.clone();
        let runner_stop = runner_stop.clone();
        async move {
            shutdown_signal().await;
            tracing::info!("shutting down: draining requests");
            // The built-in runner takes no new jobs from here on.
            runner_stop.cancel();
            shutdown.cancel();
        }
    });
    let drained = async {
        shutdown.cancelled().await;
        tokio::time::sleep(DRAIN_TIMEOUT).await;
    };
    tokio::select! {
        result = server => result.context("the HTTP server failed")?,
        _ = drained => tracing::warn!("requests still running after {DRAIN_TIMEOUT:?}; stopping anyway"),
    }
    // Jobs the built-in runner still runs are stopped unfinished; their leases run out and they
    // go back to the queue for the next server or runner.
    runner_abort.cancel();
    if let Some(runner) = local_runner {
        let _ = tokio::time::timeout(Duration::from_secs(10), runner).await;
    }
    stop_listener.cancel();
    if let Err(error) = refusal_writer.await {
        tracing::warn!(%error, "the refusal writer failed");
    }
    database.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Loads a flightdeck.yml given on the command line, printing problems like a compiler.
pub async fn load_project_file(pool: &sqlx::PgPool, file: &std::path::Path) -> anyhow::Result<()> {
    let source =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let label = file.display().to_string();
    let origin = Origin::default();
    let upload = domain::project::DefinitionUpload {
        source: &source,
        origin_label: &label,
        expected_project: None,
    };
    let operator = crate::cli::cli_actor();
    let acting = domain::environment::Acting::Operator {
        name: operator.name.clone(),
    };
    match domain::project::load_definition(pool, upload, &acting, operator, &origin).await {
        Ok(Loaded::NewVersion {
            project_key,
            version,
            governance,
        }) => {
            for change in &governance {
                tracing::warn!(project = %project_key, what = %change.what, before = %change.before, after = %change.after, "the definition changes who may deploy");
            }
            tracing::info!(project = %project_key, version, file = %label, "loaded a new pipeline definition")
        }
        Ok(Loaded::Unchanged {
            project_key,
            version,
        }) => {
            tracing::info!(project = %project_key, version, "pipeline definition unchanged")
        }
        Err(LoadDefinitionError::Invalid(diagnostics)) => {
            eprint!(
                "{}",
                domain::definition::render(&diagnostics, &label, &source)
            );
            anyhow::bail!("{label} is not a valid pipeline definition");
        }
        Err(other) => return Err(other).with_context(|| format!("cannot load {label}")),
    }
    Ok(())
}

/// The runner built into the server: the same code as `flightdeck runner`, talking to this
/// server over HTTP with a token made for it at each start. Each server process has its own
/// identity (host and port), so a second replica on the same host neither revokes this one's
/// token nor takes over its runner; a restart of the same server revokes its own old token.
async fn start_local_runner(
    portal: &Portal,
    addr: &SocketAddr,
    labels: Vec<String>,
    data_dir: &std::path::Path,
    stop: CancellationToken,
    abort: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let host = host_name();
    let token_name = format!("built-in runner on {host}:{}", addr.port());
    for old in portal.tokens.list().await? {
        if old.name == token_name && old.revoked_at.is_none() {
            portal
                .tokens
                .revoke(uuid::Uuid::parse_str(&old.id)?)
                .await?;
        }
    }
    let token = portal
        .tokens
        .create(&token_name, &[Scope::Runner], None, None)
        .await?;
    let url = if addr.ip().is_unspecified() {
        format!("http://127.0.0.1:{}", addr.port())
    } else {
        format!("http://{addr}")
    };
    let mut config = crate::runner::RunnerConfig::new(
        url,
        token.secret,
        format!("{host}-local-{}", addr.port()),
        labels,
        data_dir.join("runner"),
    );
    config.abort = abort;
    Ok(tokio::spawn(async move {
        if let Err(error) = crate::runner::run(config, stop).await {
            tracing::error!(error = %format!("{error:#}"), "the built-in runner stopped");
        }
    }))
}

/// This machine's name, as runners call themselves by default.
pub fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .unwrap_or_else(|| "localhost".to_string())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
