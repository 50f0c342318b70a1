//! `flightdeck serve`: open the database, load the configured projects, start the background
//! services and serve HTTP until SIGTERM or Ctrl-C, then drain and stop cleanly.

use crate::config::DatabaseSetting;
use crate::database::Database;
use crate::http::{self, AppState};
use crate::live::LiveHub;
use anyhow::Context;
use domain::audit::{Actor, Origin};
use domain::portal::Portal;
use domain::project::{LoadDefinitionError, Loaded};
use leptos::prelude::LeptosOptions;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How long in-flight requests may take to finish after a shutdown signal.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

/// How often expired sessions are deleted.
const SESSION_PURGE_INTERVAL: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub addr: SocketAddr,
    /// The address people use (behind a proxy); `https://…` makes cookies `Secure`.
    pub public_url: Option<String>,
    pub projects: Vec<PathBuf>,
    pub site_root: PathBuf,
    pub database: DatabaseSetting,
    pub max_connections: u32,
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
    let portal = Portal::new(pool.clone(), secure_cookies);

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
    let access = Arc::new(http::access_table()?);
    let leptos_options = LeptosOptions::builder()
        .output_name("flightdeck")
        .site_root(options.site_root.to_string_lossy().to_string())
        .site_pkg_dir("pkg")
        .site_addr(addr)
        .build();
    let state = AppState {
        leptos_options,
        portal: portal.clone(),
        live,
        access,
        shutdown: shutdown.clone(),
    };
    tokio::spawn(purge_sessions(portal.clone(), shutdown.clone()));

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

    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown({
        let shutdown = shutdown.clone();
        async move {
            shutdown_signal().await;
            tracing::info!("shutting down: draining requests");
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
    stop_listener.cancel();
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
    match domain::project::load_definition(pool, &source, &label, None, Actor::system(), &origin)
        .await
    {
        Ok(Loaded::NewVersion {
            project_key,
            version,
        }) => {
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

async fn purge_sessions(portal: Portal, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(SESSION_PURGE_INTERVAL);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => match portal.sessions.purge_expired().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(sessions = n, "deleted expired sessions"),
                Err(error) => tracing::warn!(%error, "could not delete expired sessions"),
            },
        }
    }
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
