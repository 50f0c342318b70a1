//! `flightdeck flags`: feature flags from the command line: SDK tokens, importing an Unleash
//! export, turning a flag on or off, and reading and restoring an environment's snapshots.

use crate::database::Database;
use anyhow::Context as _;
use clap::Subcommand;
use domain::audit::{Actor, Origin};
use domain::environment::{Acting, Action};
use domain::flag_view::SdkTokenKind;
use domain::flags::change::FlagChanges;
use domain::flags::definition::FlagName;
use domain::flags::import::{Imported, import};
use domain::flags::store::EnvironmentId;
use domain::flags::{ClientFeatures, FlagStore, Restored, SdkTokens, SnapshotQuery};
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum FlagsCommand {
    /// List an environment's flags with their state.
    List {
        #[arg(long)]
        project: String,
        #[arg(long)]
        environment: String,
    },
    /// Turn a flag on or off in one environment.
    Set {
        #[arg(long)]
        project: String,
        #[arg(long)]
        environment: String,
        flag: String,
        /// on or off
        #[arg(value_parser = ["on", "off"])]
        state: String,
    },
    /// Load an Unleash `/api/client/features` export into one environment: flags are created
    /// when missing, and their type, description, stale mark, state, strategies, variants,
    /// impression data and dependencies made what the file says. Segments are created (or
    /// reused by name) as `imported-<id>`.
    Import {
        #[arg(long)]
        project: String,
        #[arg(long)]
        environment: String,
        file: PathBuf,
    },
    /// An environment's snapshots, newest first.
    Snapshots {
        #[arg(long)]
        project: String,
        #[arg(long)]
        environment: String,
    },
    /// Put an environment's flags back to a snapshot (restoring it twice changes nothing).
    Restore {
        #[arg(long)]
        project: String,
        #[arg(long)]
        environment: String,
        version: i64,
    },
    /// Manage the tokens the app's SDKs use.
    #[command(subcommand)]
    SdkToken(SdkTokenCommand),
}

#[derive(Debug, Subcommand)]
pub enum SdkTokenCommand {
    /// Create a token for one environment; its secret is printed once, on the last line.
    Create {
        #[arg(long)]
        project: String,
        #[arg(long)]
        environment: String,
        /// frontend (shipped in the app) or client (server SDKs).
        #[arg(long, value_parser = parse_kind)]
        kind: SdkTokenKind,
        /// What the token is for, e.g. web-app.
        name: String,
    },
    /// List a project's SDK tokens (never their secrets).
    List {
        #[arg(long)]
        project: String,
    },
    /// Revoke a token by its id.
    Revoke {
        #[arg(long)]
        project: String,
        id: uuid::Uuid,
    },
}

fn parse_kind(value: &str) -> Result<SdkTokenKind, String> {
    value
        .parse()
        .map_err(|e: domain::flag_view::UnknownSdkTokenKind| e.to_string())
}

fn actor() -> Actor {
    crate::cli::cli_actor()
}

/// The operator at the server's command line goes through the environment's rules like anyone
/// (as [`Acting::Operator`], recorded by name in the audit log), rather than around them.
async fn authorize(store: &FlagStore, environment: EnvironmentId) -> anyhow::Result<()> {
    let acting = Acting::Operator { name: actor().name };
    FlagChanges::new(store)
        .authorize(environment, &acting, Action::ChangeFlags)
        .await?;
    Ok(())
}

pub async fn run(db: &Database, command: FlagsCommand) -> anyhow::Result<()> {
    let store = FlagStore::new(db.pool.clone());
    let origin = Origin::default();
    match command {
        FlagsCommand::List {
            project,
            environment,
        } => {
            let env = store.environment(&project, &environment).await?;
            println!("{:<40} {:<12} {:<5} STRATEGIES", "FLAG", "TYPE", "STATE");
            for flag in store.flags(env.id).await? {
                let strategies = flag.state.strategies.iter().map(|s| s.name.as_str());
                println!(
                    "{:<40} {:<12} {:<5} {}",
                    flag.name,
                    flag.flag_type.as_str(),
                    if flag.state.enabled { "on" } else { "off" },
                    strategies.collect::<Vec<_>>().join(", ")
                );
            }
        }
        FlagsCommand::Set {
            project,
            environment,
            flag,
            state,
        } => {
            let env = store.environment(&project, &environment).await?;
            authorize(&store, env.id).await?;
            let name = FlagName::parse(&flag)?;
            let applied = store
                .toggle(env.id, &name, state == "on", actor(), &origin)
                .await?;
            match applied.version_in(env.id) {
                Some(version) => {
                    println!("{flag} is {state} in {environment} (snapshot {version}).")
                }
                None => println!("{flag} was already {state} in {environment}."),
            }
        }
        FlagsCommand::Import {
            project,
            environment,
            file,
        } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let features: ClientFeatures = serde_json::from_str(&text).map_err(|e| {
                anyhow::anyhow!(
                    "{}:{}:{}: not an Unleash features export: {e}",
                    file.display(),
                    e.line(),
                    e.column()
                )
            })?;
            let env = store.environment(&project, &environment).await?;
            authorize(&store, env.id).await?;
            let Imported { created, changed } =
                import(&store, &project, env.id, features, &actor(), &origin).await?;
            println!(
                "Imported into {project}/{environment}: {created} flags created, {changed} changes (snapshot {}).",
                store.current(env.id).await?.version
            );
        }
        FlagsCommand::Snapshots {
            project,
            environment,
        } => {
            let env = store.environment(&project, &environment).await?;
            let page = store
                .list_snapshots(env.id, SnapshotQuery::default())
                .await?;
            println!("{:>7}  {:<20} {:<24} REASON", "VERSION", "WHEN", "WHO");
            for s in page.snapshots {
                println!(
                    "{:>7}  {:<20} {:<24} {}",
                    s.version,
                    s.created_at.format("%Y-%m-%d %H:%M:%S"),
                    s.created_by,
                    s.reason
                );
            }
        }
        FlagsCommand::Restore {
            project,
            environment,
            version,
        } => {
            let env = store.environment(&project, &environment).await?;
            authorize(&store, env.id).await?;
            match store
                .restore(env.id, version, actor(), &origin, None)
                .await?
            {
                Restored::Restored {
                    version: now,
                    changes,
                    ..
                } => {
                    println!("Restored snapshot {version} as snapshot {now}:");
                    for change in changes {
                        println!("  {change}");
                    }
                }
                Restored::AlreadyCurrent { .. } => {
                    println!("{environment} already has the flags of snapshot {version}.")
                }
                Restored::Replayed { version: now } => {
                    println!("Already restored, as snapshot {now}.")
                }
            }
        }
        FlagsCommand::SdkToken(command) => sdk_token(db, command).await?,
    }
    Ok(())
}

async fn sdk_token(db: &Database, command: SdkTokenCommand) -> anyhow::Result<()> {
    let tokens = SdkTokens::new(db.pool.clone());
    match command {
        SdkTokenCommand::Create {
            project,
            environment,
            kind,
            name,
        } => {
            let token = tokens
                .create(
                    &project,
                    &environment,
                    kind,
                    &name,
                    actor(),
                    &Origin::default(),
                )
                .await?;
            println!(
                "Created {kind} token {name} for {project}/{environment} ({}). Its secret, shown only now:",
                token.summary.id
            );
            println!("{}", token.secret);
        }
        SdkTokenCommand::List { project } => {
            println!(
                "{:<36}  {:<20} {:<8} {:<12} {:<28} STATE",
                "ID", "NAME", "KIND", "ENVIRONMENT", "PREFIX"
            );
            for t in tokens.list(&project).await? {
                let state = match (t.revoked_at, t.last_used_at) {
                    (Some(_), _) => "revoked".to_string(),
                    (None, Some(at)) => format!("last used {}", at.format("%Y-%m-%d %H:%M UTC")),
                    (None, None) => "never used".to_string(),
                };
                println!(
                    "{:<36}  {:<20} {:<8} {:<12} {:<28} {state}",
                    t.id, t.name, t.kind, t.environment, t.prefix
                );
            }
        }
        SdkTokenCommand::Revoke { project, id } => {
            if tokens
                .revoke(&project, id, actor(), &Origin::default())
                .await?
            {
                println!("Revoked {id}.");
            } else {
                println!("{id} was already revoked.");
            }
        }
    }
    Ok(())
}
