//! The `flightdeck` command line. Every flag has an environment variable; `--config` adds a TOML
//! file under both (see `config::FileSettings`).

use crate::config::{DatabaseSetting, FileSettings, default_data_dir};
use crate::database::Database;
use crate::serve::{ServeOptions, serve};
use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use domain::audit::{Actor, Origin};
use domain::auth::{NewUser, Scope, Secret, Tokens, Users};
use domain::role::Role;
use std::io::Read;
use std::net::SocketAddr;

/// Where `cargo leptos build` leaves the site for a build like this one: release and debug
/// builds keep theirs apart, so one never serves the other's (see `.ci/portal`).
const DEFAULT_SITE_ROOT: &str = if cfg!(debug_assertions) {
    "target/site"
} else {
    "target/site-release"
};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "flightdeck",
    version,
    about = "Flightdeck: a self-hosted release portal for one team's path from commit to production.",
    long_about = "Flightdeck: a self-hosted release portal for one team's path from commit to production.\n\n\
        Without DATABASE_URL it keeps everything in a private PostgreSQL cluster under the data \
        directory, started from this machine's PostgreSQL binaries and stopped on exit.\n\n\
        Start with `flightdeck serve --project path/to/flightdeck.yml`, then open the printed setup link."
)]
pub struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct GlobalArgs {
    /// A TOML settings file; flags and environment variables override what it says.
    #[arg(long, env = "FLIGHTDECK_CONFIG", global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Where Flightdeck keeps its data (the embedded PostgreSQL cluster among it).
    /// [default: /var/lib/flightdeck as root, else $XDG_DATA_HOME/flightdeck or
    /// ~/.local/share/flightdeck]
    #[arg(long, env = "FLIGHTDECK_DATA_DIR", global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// A PostgreSQL server to use instead of the embedded cluster, e.g.
    /// postgres://flightdeck:secret@db.internal/flightdeck. Several replicas share one.
    #[arg(
        long,
        env = "DATABASE_URL",
        global = true,
        hide_env_values = true,
        value_name = "URL"
    )]
    database_url: Option<String>,
    /// Database connections per process. [default: 20]
    #[arg(long, env = "FLIGHTDECK_MAX_CONNECTIONS", global = true)]
    max_connections: Option<u32>,
    /// Say more: -v shows what the embedded database and each request do, -vv everything.
    /// FLIGHTDECK_LOG (e.g. `info,sqlx=warn`) overrides it.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the portal: web pages, API, live updates.
    Serve(ServeArgs),
    /// Manage people: add, list, change roles, reset passwords.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage API tokens for CI, runners and SDKs.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Feature flags: SDK tokens, import, on/off, snapshots and restore.
    #[command(subcommand)]
    Flags(crate::cli_flags::FlagsCommand),
    /// Manage projects: where their code lives.
    #[command(subcommand)]
    Project(ProjectCommand),
    /// Promote a release into an environment (a running server drives the deployment).
    Promote(crate::cli_deploy::PromoteArgs),
    /// Decide on a deployment's stage: approve, reject, tick, pass, fail, override the window.
    #[command(subcommand)]
    Decide(crate::cli_deploy::DecideCommand),
    /// Roll an environment back to its last good release (or `--to` one): flags, site, deploy
    /// job and database together; a running server drives it.
    Rollback(crate::cli_deploy::RollbackArgs),
    /// Run jobs for a Flightdeck server, on this machine or another. The first SIGTERM or Ctrl-C
    /// stops taking jobs and waits for those under way; a second one stops them too.
    Runner(crate::runner::RunnerArgs),
    /// Print a new one-time link for creating the first admin, while nobody can sign in yet
    /// (earlier links stop working).
    SetupLink {
        /// The address people open the portal at. [default: http://127.0.0.1:3000]
        #[arg(long, env = "FLIGHTDECK_PUBLIC_URL", value_name = "URL")]
        public_url: Option<String>,
    },
    /// Bring the database schema up to date, then exit (serve does this too).
    Migrate,
    /// Check a flightdeck.yml and print every problem with its line and column.
    CheckDefinition {
        /// The file to check.
        file: PathBuf,
    },
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on; port 0 picks a free port. [default: 127.0.0.1:3000]
    #[arg(long, env = "FLIGHTDECK_ADDR", value_name = "HOST:PORT")]
    addr: Option<SocketAddr>,
    /// The URL people open, when it differs from --addr (a proxy in front). An https URL makes
    /// session cookies Secure.
    #[arg(long, env = "FLIGHTDECK_PUBLIC_URL", value_name = "URL")]
    public_url: Option<String>,
    /// A project's flightdeck.yml to load at start (repeat for several projects).
    #[arg(
        long = "project",
        env = "FLIGHTDECK_PROJECTS",
        value_delimiter = ',',
        value_name = "FILE"
    )]
    projects: Vec<PathBuf>,
    /// The built web assets (cargo-leptos' site directory). [default: target/site-release for a
    /// release build, target/site for a debug one]
    #[arg(long, env = "LEPTOS_SITE_ROOT", value_name = "DIR")]
    site_root: Option<PathBuf>,
    /// Labels of the runner built into the server (comma-separated). [default: linux,local]
    #[arg(
        long,
        env = "FLIGHTDECK_LOCAL_RUNNER_LABELS",
        value_delimiter = ',',
        value_name = "LABELS"
    )]
    local_runner_labels: Vec<String>,
    /// Run no jobs in this process; only remote runners (`flightdeck runner`) will.
    #[arg(long, env = "FLIGHTDECK_NO_LOCAL_RUNNER")]
    no_local_runner: bool,
    /// The secret GitHub signs push webhooks with; without it the webhook endpoint is off.
    #[arg(
        long,
        env = "FLIGHTDECK_GITHUB_WEBHOOK_SECRET",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    github_webhook_secret: Option<String>,
    /// Where artifacts (and so the environments' sites) are stored: an S3-compatible bucket,
    /// s3://BUCKET or s3://BUCKET/PREFIX, which every replica must share when they run on
    /// several machines. The endpoint, region and credentials come from the standard
    /// variables: AWS_ENDPOINT_URL (for a store other than AWS), AWS_REGION,
    /// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, and AWS_ALLOW_HTTP=true for a plain-http
    /// endpoint. [default: files under <data dir>/artifacts]
    #[arg(long, env = "FLIGHTDECK_ARTIFACT_STORE", value_name = "URL")]
    artifact_store: Option<String>,
    /// Variables every deployment job gets (its deploy job and the tests after it), as
    /// KEY=VALUE, `;`-separated in the variable; `{project}` and `{environment}` in a value are
    /// replaced. The sample's deploy job reads STUDYBUDDY_DEPLOY_DIR and
    /// STUDYBUDDY_RESTART_COMMAND from here.
    #[arg(
        long = "deploy-env",
        env = "FLIGHTDECK_DEPLOY_ENV",
        value_delimiter = ';',
        value_name = "KEY=VALUE"
    )]
    deploy_env: Vec<String>,
    /// Environments' APIs listen on this machine at this port plus the environment's position
    /// (1, 2, 3… in the definition): deployment jobs get PORT, and the runtime configuration's
    /// api_base points there. [default: the site's own origin]
    #[arg(long, env = "FLIGHTDECK_ENVIRONMENT_PORT_BASE", value_name = "PORT")]
    environment_port_base: Option<u16>,
}

#[derive(Debug, Subcommand)]
enum ProjectCommand {
    /// Say where a project's git repository is (a path on this machine or a git URL).
    SetRepository { project: String, location: String },
    /// Make a git repository for a project from a directory (once), with a hook that starts a
    /// run on every push, and point the project at it. Prints the repository's path.
    CreateRepository {
        project: String,
        /// The files of the first commit.
        #[arg(long, value_name = "DIR")]
        from: PathBuf,
        /// The portal's URL, for the push hook. [default: http://127.0.0.1:3000]
        #[arg(long, value_name = "URL")]
        server_url: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Add a person. Prints a generated password unless --password-stdin is given.
    Add {
        username: String,
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// The name shown in the portal. [default: the username]
        #[arg(long)]
        name: Option<String>,
        /// Read the password from standard input instead of generating one.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List everyone with their role.
    List,
    /// Change someone's role.
    SetRole {
        username: String,
        #[arg(value_parser = parse_role)]
        role: Role,
    },
    /// Set a new password (generated unless --password-stdin) and end their sessions.
    ResetPassword {
        username: String,
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create a token; its secret is printed once.
    Create {
        /// What the token is for, e.g. github-actions.
        name: String,
        /// What it may do: read, definition:write, schedules:write (repeat or comma-separate).
        #[arg(long = "scope", required = true, value_delimiter = ',', value_parser = parse_scope)]
        scopes: Vec<Scope>,
        /// Days until it stops working. [default: never]
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token by its id.
    Revoke { id: uuid::Uuid },
}

fn parse_role(value: &str) -> Result<Role, String> {
    value
        .parse()
        .map_err(|e: domain::role::UnknownRole| e.to_string())
}

fn parse_scope(value: &str) -> Result<Scope, String> {
    value
        .parse()
        .map_err(|e: domain::scope::UnknownScope| e.to_string())
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(
        cli.global.verbose,
        matches!(cli.command, Command::Serve(_) | Command::Runner(_)),
    );
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr. A server says what it does at info (each request only at debug, so the
/// setup link and warnings stay in view); a one-off command is quiet unless something is wrong.
fn init_tracing(verbose: u8, long_running: bool) {
    use tracing_subscriber::EnvFilter;
    let default = match (verbose, long_running) {
        (0, true) => "info,sqlx=warn,tower_http=warn",
        (0, false) => "warn,sqlx=error",
        (1, _) => "debug,sqlx=warn,hyper=info,h2=info",
        _ => "trace",
    };
    let filter =
        EnvFilter::try_from_env("FLIGHTDECK_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let json = std::env::var("FLIGHTDECK_LOG_FORMAT").is_ok_and(|f| f == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let file = FileSettings::load(cli.global.config.as_deref())?;
    let database = || -> anyhow::Result<DatabaseSetting> {
        // An empty DATABASE_URL (as `export DATABASE_URL=` leaves it) means "not set".
        let url = cli
            .global
            .database_url
            .clone()
            .filter(|u| !u.trim().is_empty());
        Ok(match url.or(file.database_url.clone()) {
            Some(url) => DatabaseSetting::Url(url),
            None => DatabaseSetting::Embedded {
                data_dir: match cli.global.data_dir.clone().or(file.data_dir.clone()) {
                    Some(dir) => dir,
                    None => default_data_dir()?,
                },
            },
        })
    };
    let max_connections = cli
        .global
        .max_connections
        .or(file.max_connections)
        .unwrap_or(20);
    match cli.command {
        Command::CheckDefinition { file } => check_definition(&file),
        Command::Serve(args) => {
            let data_dir = match cli.global.data_dir.clone().or(file.data_dir.clone()) {
                Some(dir) => dir,
                None => default_data_dir()?,
            };
            let labels = if args.local_runner_labels.is_empty() {
                vec!["linux".to_string(), "local".to_string()]
            } else {
                args.local_runner_labels
            };
            let mut projects = args.projects;
            if projects.is_empty() {
                projects = file.projects.clone();
            }
            serve(ServeOptions {
                addr: args
                    .addr
                    .or(file.addr)
                    .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 3000))),
                public_url: args.public_url.or(file.public_url.clone()),
                projects,
                site_root: args
                    .site_root
                    .or(file.site_root.clone())
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_SITE_ROOT)),
                database: database()?,
                max_connections,
                data_dir,
                artifact_store: args
                    .artifact_store
                    .or(file.artifact_store.clone())
                    .filter(|s| !s.trim().is_empty()),
                local_runner: (!args.no_local_runner).then_some(labels),
                webhook_secret: args.github_webhook_secret.filter(|s| !s.is_empty()),
                deploy_env: crate::deployer::world::parse_deploy_env(&args.deploy_env)?,
                environment_port_base: args.environment_port_base,
            })
            .await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Project(command) => {
            let data_dir = match cli.global.data_dir.clone().or(file.data_dir.clone()) {
                Some(dir) => dir,
                None => default_data_dir()?,
            };
            let db = Database::open(&database()?, 2).await?;
            let result = match command {
                ProjectCommand::SetRepository { project, location } => {
                    crate::repository::set(&db.pool, &project, &location, cli_actor())
                        .await
                        .map(|()| {
                            println!("Project {project} builds from {location}.");
                        })
                }
                ProjectCommand::CreateRepository {
                    project,
                    from,
                    server_url,
                } => {
                    let url = server_url.unwrap_or_else(|| "http://127.0.0.1:3000".into());
                    crate::repository::create(
                        &db.pool,
                        &data_dir,
                        &project,
                        &from,
                        &url,
                        cli_actor(),
                    )
                    .await
                    .map(|path| {
                        println!("{}", path.display());
                    })
                }
            };
            db.close().await;
            result.map(|()| ExitCode::SUCCESS)
        }
        Command::Runner(args) => {
            let data_dir = cli.global.data_dir.clone().or(file.data_dir.clone());
            crate::runner::run_until_signal(args, data_dir).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::SetupLink { public_url } => {
            let db = Database::open(&database()?, 2).await?;
            let users = Users::new(db.pool.clone(), Default::default());
            let result = users.create_setup_link().await;
            db.close().await;
            let url = public_url
                .or(file.public_url.clone())
                .unwrap_or_else(|| "http://127.0.0.1:3000".into());
            match result? {
                Some(link) => {
                    println!("{}/setup/{}", url.trim_end_matches('/'), link.expose());
                    Ok(ExitCode::SUCCESS)
                }
                None => {
                    eprintln!(
                        "error: people can sign in already; an admin adds more under People, or \
                         run `flightdeck user add NAME --role admin`"
                    );
                    Ok(ExitCode::FAILURE)
                }
            }
        }
        Command::Migrate => {
            let db = Database::open(&database()?, 2).await?;
            println!("The database schema is up to date.");
            db.close().await;
            Ok(ExitCode::SUCCESS)
        }
        Command::User(command) => {
            let db = Database::open(&database()?, 2).await?;
            let result =
                user_command(Users::new(db.pool.clone(), Default::default()), command).await;
            db.close().await;
            result.map(|()| ExitCode::SUCCESS)
        }
        Command::Promote(args) => {
            let db = Database::open(&database()?, 2).await?;
            let result = crate::cli_deploy::promote_command(&db, args).await;
            db.close().await;
            result.map(|()| ExitCode::SUCCESS)
        }
        Command::Rollback(args) => {
            let db = Database::open(&database()?, 2).await?;
            let result = crate::cli_deploy::rollback_command(&db, args).await;
            db.close().await;
            result.map(|()| ExitCode::SUCCESS)
        }
        Command::Decide(command) => {
            let db = Database::open(&database()?, 2).await?;
            let result = crate::cli_deploy::decide_command(&db, command).await;
            db.close().await;
            result.map(|()| ExitCode::SUCCESS)
        }
        Command::Flags(command) => {
            let db = Database::open(&database()?, 2).await?;
            let result = crate::cli_flags::run(&db, command).await;
            db.close().await;
            result.map(|()| ExitCode::SUCCESS)
        }
        Command::Token(command) => {
            let db = Database::open(&database()?, 2).await?;
            let result = token_command(&db, command).await;
            db.close().await;
            result.map(|()| ExitCode::SUCCESS)
        }
    }
}

fn check_definition(file: &std::path::Path) -> anyhow::Result<ExitCode> {
    let source =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    match domain::definition::parse(&source) {
        Ok(definition) => {
            let stages = definition.stages().count();
            println!(
                "{}: ok: project `{}`, {} phases, {stages} stages, {} environments, {} schedules",
                file.display(),
                definition.project().key,
                definition.phases().len(),
                definition.environments().len(),
                definition.schedules().len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(diagnostics) => {
            eprint!(
                "{}",
                domain::definition::render(&diagnostics, &file.display().to_string(), &source)
            );
            eprintln!("{}: {} error(s)", file.display(), diagnostics.len());
            Ok(ExitCode::FAILURE)
        }
    }
}

/// The operator at this command line, as the audit log names them: `cli:<OS user>@<host>`.
pub(crate) fn cli_actor() -> Actor {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| {
            let uid = nix_uid();
            user_of_uid(&uid).unwrap_or(format!("uid {uid}"))
        });
    Actor::cli(&format!("{user}@{}", crate::instance::host_name()))
}

/// The login name of `uid` in /etc/passwd (`root` for 0), when it has one.
fn user_of_uid(uid: &str) -> Option<String> {
    std::fs::read_to_string("/etc/passwd")
        .ok()?
        .lines()
        .find_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            (fields.nth(1)? == uid).then(|| name.to_string())
        })
}

/// The real user id (for an operator whose environment names no user, e.g. under systemd).
fn nix_uid() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().next().map(str::to_string))
        })
        .unwrap_or_else(|| "unknown".into())
}

/// A password from stdin (first line), or a generated one that is printed.
fn password(from_stdin: bool) -> anyhow::Result<(String, bool)> {
    if from_stdin {
        let mut input = String::new();
        std::io::stdin()
            .read_to_string(&mut input)
            .context("cannot read the password from stdin")?;
        Ok((input.lines().next().unwrap_or_default().to_string(), false))
    } else {
        // 43 URL-safe characters of OS randomness, without the token prefix.
        Ok((
            Secret::generate("").expose().chars().take(20).collect(),
            true,
        ))
    }
}

async fn user_command(users: Users, command: UserCommand) -> anyhow::Result<()> {
    let origin = Origin::default();
    match command {
        UserCommand::Add {
            username,
            role,
            name,
            password_stdin,
        } => {
            let (password, generated) = password(password_stdin)?;
            let display_name = name.unwrap_or_default();
            let new = NewUser {
                username: &username,
                display_name: &display_name,
                role,
                password: &password,
            };
            users.create(new, cli_actor(), &origin).await?;
            println!("Added {username} as {}.", role.label());
            if generated {
                println!("Their password: {password}");
            }
        }
        UserCommand::List => {
            println!("{:<24} {:<16} {:<9} NAME", "USERNAME", "ROLE", "STATUS");
            for user in users.list().await? {
                let status = if user.disabled { "disabled" } else { "active" };
                println!(
                    "{:<24} {:<16} {:<9} {}",
                    user.username,
                    user.role.as_str(),
                    status,
                    user.display_name
                );
            }
        }
        UserCommand::SetRole { username, role } => {
            users
                .set_role(&username, role, cli_actor(), &origin)
                .await?;
            println!("{username} is now {}.", role.label());
        }
        UserCommand::ResetPassword {
            username,
            password_stdin,
        } => {
            let (password, generated) = password(password_stdin)?;
            users
                .reset_password(&username, &password, cli_actor(), &origin)
                .await?;
            println!("Password of {username} changed; their sessions were ended.");
            if generated {
                println!("Their new password: {password}");
            }
        }
    }
    Ok(())
}

async fn token_command(db: &Database, command: TokenCommand) -> anyhow::Result<()> {
    use domain::audit::AuditRecord;
    let tokens = Tokens::new(db.pool.clone());
    let origin = Origin::default();
    match command {
        TokenCommand::Create {
            name,
            scopes,
            expires_in_days,
        } => {
            let expires_at =
                expires_in_days.map(|d| chrono::Utc::now() + chrono::Duration::days(d.into()));
            let token = tokens.create(&name, &scopes, None, expires_at).await?;
            AuditRecord::new(cli_actor(), "token.created", &origin)
                .security()
                .target(&name)
                .details(
                    serde_json::json!({ "id": token.summary.id, "scopes": token.summary.scopes }),
                )
                .write(&db.pool)
                .await?;
            println!(
                "Created token {} ({}). Its secret, shown only now:",
                name, token.summary.id
            );
            println!("{}", token.secret);
        }
        TokenCommand::List => {
            println!(
                "{:<36}  {:<20} {:<12} {:<32} STATE",
                "ID", "NAME", "PREFIX", "SCOPES"
            );
            for t in tokens.list().await? {
                let state = match (t.revoked_at, t.last_used_at) {
                    (Some(_), _) => "revoked".to_string(),
                    (None, Some(at)) => format!("last used {}", at.format("%Y-%m-%d %H:%M UTC")),
                    (None, None) => "never used".to_string(),
                };
                println!(
                    "{:<36}  {:<20} {:<12} {:<32} {state}",
                    t.id,
                    t.name,
                    t.prefix,
                    t.scopes.join(",")
                );
            }
        }
        TokenCommand::Revoke { id } => {
            if tokens.revoke(id).await? {
                AuditRecord::new(cli_actor(), "token.revoked", &origin)
                    .security()
                    .target(id.to_string())
                    .write(&db.pool)
                    .await?;
                println!("Revoked {id}.");
            } else {
                println!("{id} was already revoked.");
            }
        }
    }
    Ok(())
}
