//! `flightdeck promote`, `flightdeck decide` and `flightdeck rollback`: releases and deployments from the command line,
//! through the same use cases as the pages and the REST API. The operator acts as
//! [`Acting::Operator`] (named by OS user and host in the audit log) — through the environment's
//! rules, not around them; approvals that others must give are still waited for by the
//! deployment.

use crate::database::Database;
use clap::{Args, Subcommand};
use domain::audit::Origin;
use domain::deployment::DeploymentTrigger;
use domain::deployment::decide::{Decision, decide};
use domain::deployment::rollback::{Cause, RollbackRequest, roll_back};
use domain::deployment::store::{PromoteRequest, Promoted, ReleaseChoice, promote};
use domain::environment::Acting;

#[derive(Debug, Args)]
pub struct PromoteArgs {
    #[arg(long)]
    pub project: String,
    #[arg(long)]
    pub environment: String,
    /// The release's version; default the newest that may go there (development: the newest
    /// green; later environments: the newest that passed the one before).
    #[arg(long)]
    pub release: Option<String>,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    #[arg(long)]
    pub project: String,
    #[arg(long)]
    pub environment: String,
    /// The release to go back to; default the last good one (the newest earlier release whose
    /// deployment there succeeded and was not itself rolled back).
    #[arg(long)]
    pub to: Option<String>,
    /// The deployment to roll back (its number); default the one running there now. Asking
    /// again for the same deployment gives the rollback already under way.
    #[arg(long)]
    pub deployment: Option<i64>,
}

#[derive(Debug, Subcommand)]
pub enum DecideCommand {
    /// Approve a gate, or a protected deploy that waits for approvals.
    Approve {
        #[command(flatten)]
        at: StageArgs,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Reject at a gate (stops the deployment).
    Reject {
        #[command(flatten)]
        at: StageArgs,
        #[arg(long)]
        comment: String,
    },
    /// Tick a checklist item of a manual stage.
    Tick {
        #[command(flatten)]
        at: StageArgs,
        #[arg(long)]
        item: i32,
    },
    /// Pass a health check that could not measure anything, with the reason.
    Pass {
        #[command(flatten)]
        at: StageArgs,
        #[arg(long)]
        reason: String,
    },
    /// Fail a manual stage or a check, with the reason.
    Fail {
        #[command(flatten)]
        at: StageArgs,
        #[arg(long)]
        reason: String,
    },
    /// Let a deploy start outside its environment's deploy window, with the reason.
    OverrideWindow {
        #[command(flatten)]
        at: StageArgs,
        #[arg(long)]
        reason: String,
    },
}

#[derive(Debug, Args)]
pub struct StageArgs {
    #[arg(long)]
    pub project: String,
    /// The deployment's number.
    #[arg(long)]
    pub deployment: i64,
    /// The stage's name (e.g. qa-approval).
    #[arg(long)]
    pub stage: String,
}

fn operator() -> (Acting, domain::audit::Actor) {
    let actor = crate::cli::cli_actor();
    (
        Acting::Operator {
            name: actor.name.clone(),
        },
        actor,
    )
}

pub async fn promote_command(db: &Database, args: PromoteArgs) -> anyhow::Result<()> {
    let (acting, actor) = operator();
    let promoted = promote(
        &db.pool,
        &PromoteRequest {
            project: args.project.clone(),
            environment: args.environment.clone(),
            release: match args.release {
                Some(version) => ReleaseChoice::Version(version),
                None => ReleaseChoice::NewestEligible,
            },
            acting,
            actor,
            trigger: DeploymentTrigger::Manual,
            idempotency_key: None,
        },
        &Origin::default(),
        chrono::Utc::now(),
    )
    .await?;
    match promoted {
        Promoted::Started(created) => println!(
            "Deployment #{} of {} to {} started; a running server drives it.",
            created.number, created.version, args.environment
        ),
        Promoted::AlreadyCurrent { version } => {
            println!(
                "{version} already runs in {}; nothing to do.",
                args.environment
            )
        }
    }
    Ok(())
}

pub async fn rollback_command(db: &Database, args: RollbackArgs) -> anyhow::Result<()> {
    let (acting, actor) = operator();
    let rolled = roll_back(
        &db.pool,
        &RollbackRequest {
            project: args.project.clone(),
            environment: args.environment.clone(),
            rolls_back: args.deployment,
            to: args.to,
            cause: Cause::Person {
                name: acting.name().to_string(),
            },
            acting,
            actor,
            trigger: DeploymentTrigger::Manual,
            idempotency_key: None,
        },
        &Origin::default(),
        chrono::Utc::now(),
    )
    .await?;
    let d = &rolled.deployment;
    if d.created {
        println!(
            "Rollback #{} of {} from {} to {} started; a running server drives it.",
            d.number, args.environment, rolled.from_version, rolled.to_version
        );
    } else {
        println!(
            "Rollback #{} of {} from {} to {} was already asked for; nothing new started.",
            d.number, args.environment, rolled.from_version, rolled.to_version
        );
    }
    Ok(())
}

pub async fn decide_command(db: &Database, command: DecideCommand) -> anyhow::Result<()> {
    let (at, decision) = match command {
        DecideCommand::Approve { at, comment } => (at, Decision::Approve { comment }),
        DecideCommand::Reject { at, comment } => (at, Decision::Reject { comment }),
        DecideCommand::Tick { at, item } => (at, Decision::Tick { item }),
        DecideCommand::Pass { at, reason } => (at, Decision::Pass { comment: reason }),
        DecideCommand::Fail { at, reason } => (at, Decision::Fail { comment: reason }),
        DecideCommand::OverrideWindow { at, reason } => (at, Decision::OverrideWindow { reason }),
    };
    let (acting, actor) = operator();
    decide(
        &db.pool,
        &at.project,
        at.deployment,
        &at.stage,
        decision,
        &acting,
        &actor,
        &Origin::default(),
        chrono::Utc::now(),
    )
    .await?;
    println!(
        "Recorded on deployment #{}'s {} stage.",
        at.deployment, at.stage
    );
    Ok(())
}
