//! `flightdeck serve`: open the database, load the configured projects, start an [`Instance`]
//! (HTTP and the background services) and serve until SIGTERM or Ctrl-C, then drain and stop.

use crate::config::DatabaseSetting;
use crate::database::Database;
use crate::deployer::world::World;
use crate::http::assets::{Site, SiteError};
use crate::instance::{Instance, InstanceConfig, LocalRunner};
use anyhow::Context;
use domain::audit::Origin;
use domain::portal::Portal;
use domain::project::{LoadDefinitionError, Loaded};
use domain::run::artifacts::ArtifactStore;
use domain::run::work::Secrets;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio::net::TcpListener;

/// How often the setup link is printed again while nobody can sign in.
const SETUP_LINK_REMINDER: Duration = Duration::from_secs(60);
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
    /// Where artifacts are stored: `s3://bucket[/prefix]`, or None for `<data_dir>/artifacts`.
    pub artifact_store: Option<String>,
    /// Labels of the built-in runner; None turns it off.
    pub local_runner: Option<Vec<String>>,
    pub webhook_secret: Option<String>,
    /// Variables for deployment jobs (`--deploy-env`).
    pub deploy_env: Vec<(String, String)>,
    /// Environments' APIs on this machine: this port plus the environment's position.
    pub environment_port_base: Option<u16>,
}

pub async fn serve(options: ServeOptions) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let stop_requested = shutdown_signal();
    // Checked first: a site from another build is refused before anything starts.
    let site = match Site::open(&options.site_root) {
        Ok(site) => site,
        Err(missing @ SiteError::Missing { .. }) => {
            tracing::warn!("{missing}");
            Site::unchecked(&options.site_root)
        }
        Err(other) => return Err(other.into()),
    };
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
    let artifacts = ArtifactStore::open(
        options.artifact_store.as_deref(),
        &options.data_dir.join("artifacts"),
    )?;
    tracing::info!(store = %artifacts.describe(), "artifacts are stored here");
    let portal = Portal::new(
        pool.clone(),
        secure_cookies,
        artifacts.clone(),
        Secrets::from_env(),
    );
    let listener = TcpListener::bind(options.addr)
        .await
        .with_context(|| format!("cannot listen on {}", options.addr))?;

    let mut instance = Instance::start(InstanceConfig {
        listener,
        public_url: options.public_url.clone(),
        site,
        portal,
        webhook_secret: options.webhook_secret.clone(),
        local_runner: options.local_runner.clone().map(|labels| LocalRunner {
            labels,
            data_dir: options.data_dir.clone(),
        }),
        world: World {
            deploy_env: std::sync::Arc::new(options.deploy_env.clone()),
            port_base: options.environment_port_base,
            ..World::default()
        }
        .with_databases(&database.url(), artifacts, options.data_dir.join("tmp"))?,
        data_dir: options.data_dir.clone(),
    })
    .await?;
    println!(
        "Flightdeck is listening on http://{} (ready in {} ms)",
        instance.addr,
        started.elapsed().as_millis()
    );
    let public_url = instance.public_url.clone();
    let reminder = match instance.portal.users.create_setup_link().await? {
        Some(link) => {
            let message = format!(
                "No one can sign in yet. Open {public_url}/setup/{} to create the first admin \
                 (valid for 24 hours, works once), or run `flightdeck user add NAME --role admin`.",
                link.expose()
            );
            println!("{message}");
            Some(tokio::spawn(remind_of_setup_link(
                instance.portal.users.clone(),
                message,
            )))
        }
        None => {
            println!("Sign in at {public_url}/login");
            None
        }
    };

    let failure = tokio::select! {
        _ = stop_requested => None,
        error = instance.failed() => Some(error),
    };
    if let Some(reminder) = reminder {
        reminder.abort();
    }
    tracing::info!("shutting down: draining requests");
    instance.stop(DRAIN_TIMEOUT).await;
    database.close().await;
    match failure {
        Some(error) => Err(error),
        None => {
            tracing::info!("stopped");
            Ok(())
        }
    }
}

/// Prints the setup link again every minute until someone has an account, so it does not scroll
/// out of sight behind the log (`flightdeck setup-link` makes a new one at any time).
async fn remind_of_setup_link(users: domain::auth::Users, message: String) {
    let mut tick = tokio::time::interval(SETUP_LINK_REMINDER);
    tick.tick().await;
    loop {
        tick.tick().await;
        match users.anyone_exists().await {
            Ok(true) => return,
            Ok(false) => println!("{message}"),
            Err(error) => tracing::debug!(%error, "could not check for the first admin"),
        }
    }
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

/// SIGTERM or Ctrl-C. The handlers are installed when this is called, not when the future is
/// first polled, so a signal that arrives while the server is still starting is not lost (it
/// would otherwise kill the process outright).
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).ok();
    let mut interrupt = signal(SignalKind::interrupt()).ok();
    async move {
        let term = async {
            match terminate.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        let int = async {
            match interrupt.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = term => {},
            _ = int => {},
        }
    }
}
