//! What the deployer does for each kind of stage. One call looks at the deployment's first
//! unfinished stage and does the next thing it needs; it returns [`Next::Again`] when something
//! moved and [`Next::Wait`] when the stage waits (for people, a job, a window).

use super::{Deployer, Next};
use anyhow::Context;
use domain::audit::{Actor, AuditRecord, Origin};
use domain::deployment::record::StageEvent;
use domain::deployment::store::{self, Locked, StageRow, StepState};
use domain::deployment::{DeploymentId, StageSpec, checklist, decide, jobs};
use domain::environment::{self, approvers};
use domain::state::RunState;
use serde_json::json;
use sqlx::{Postgres, Transaction};
use std::collections::BTreeMap;

type Tx = Transaction<'static, Postgres>;

/// Looks at one deployment once.
pub(crate) async fn step(deployer: &Deployer, id: DeploymentId) -> anyhow::Result<Next> {
    let now = deployer.portal.clock.now();
    let mut tx = deployer.portal.pool.begin().await?;
    let deployment = store::lock(&mut tx, id).await?;
    if deployment.state.is_finished() || !store::holds(&mut tx, id, deployer.driver, now).await? {
        return Ok(Next::Wait);
    }
    let stages = store::load_stages(&mut tx, id).await?;
    let Some(stage) = stages
        .iter()
        .find(|s| !s.record.state.is_finished())
        .cloned()
    else {
        store::refresh(&mut tx, id, now).await?;
        tx.commit().await?;
        return Ok(Next::Wait);
    };
    let stage_ctx = StageCtx {
        deployer,
        deployment,
        stage,
    };
    match stage_ctx.stage.spec.clone() {
        StageSpec::Deploy {
            publish,
            migrate,
            job,
        } => {
            stage_ctx
                .deploy(tx, &publish, migrate.as_deref(), job.as_ref())
                .await
        }
        StageSpec::Jobs { jobs } => stage_ctx.jobs(tx, &jobs).await,
        StageSpec::Manual { checklist } => stage_ctx.manual(tx, checklist.as_deref()).await,
        StageSpec::Gate {
            role, approvals, ..
        } => stage_ctx.gate(tx, role, approvals).await,
        StageSpec::Flags { environment, set } => stage_ctx.flags(tx, &environment, &set).await,
        StageSpec::Check { .. } => stage_ctx.check(tx).await,
        StageSpec::Publish { artifacts } => {
            let Some(tx) = stage_ctx.started(tx).await? else {
                return Ok(Next::Again);
            };
            match stage_ctx.publish_step(tx, &artifacts).await? {
                Some(tx) => stage_ctx.succeed(tx, Some("published".into())).await,
                None => Ok(Next::Again),
            }
        }
        StageSpec::Rollback { plan } => stage_ctx.rollback(tx, &plan).await,
        StageSpec::Migrate { artifact, backup } => {
            let Some(tx) = stage_ctx.started(tx).await? else {
                return Ok(Next::Again);
            };
            match stage_ctx.migrate_step(tx, &artifact, backup).await? {
                Some(tx) => stage_ctx.succeed(tx, Some("migrated".into())).await,
                None => Ok(Next::Again),
            }
        }
    }
}

pub(super) struct StageCtx<'a> {
    pub(super) deployer: &'a Deployer,
    pub(super) deployment: Locked,
    pub(super) stage: StageRow,
}

impl StageCtx<'_> {
    pub(super) fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.deployer.portal.clock.now()
    }

    /// Moves the stage by `event` and saves it (and the deployment's summary).
    pub(super) async fn apply(&self, tx: &mut Tx, event: StageEvent) -> anyhow::Result<()> {
        let now = self.now();
        let next = self.stage.record.apply(&event, now)?;
        if next != self.stage.record {
            store::save_stage(tx, self.deployment.id, self.stage.id, &next, now).await?;
        }
        Ok(())
    }

    /// Makes the stage running (from queued or waiting). Returns false when it moved (so the
    /// caller looks again with the new record), true when it was running already.
    /// Starts (or resumes) the stage when it is not running yet, committing that, and says to
    /// come back (None); gives the transaction back when it runs already. Committing here, not
    /// at each caller, is what keeps a stage from staying queued for ever.
    pub(super) async fn started(&self, mut tx: Tx) -> anyhow::Result<Option<Tx>> {
        if self.running(&mut tx).await? {
            return Ok(Some(tx));
        }
        tx.commit().await?;
        Ok(None)
    }

    pub(super) async fn running(&self, tx: &mut Tx) -> anyhow::Result<bool> {
        let event = match self.stage.record.state {
            RunState::Running => return Ok(true),
            RunState::Waiting => StageEvent::Resume,
            _ => StageEvent::Start,
        };
        self.apply(tx, event).await?;
        Ok(false)
    }

    /// Makes the stage wait with `reason` (or updates the words), commits, and says wait.
    pub(super) async fn wait(&self, mut tx: Tx, reason: String) -> anyhow::Result<Next> {
        let event = if self.stage.record.state == RunState::Waiting {
            if self.stage.record.reason.as_deref() == Some(reason.as_str()) {
                return Ok(Next::Wait);
            }
            StageEvent::Explain(Some(reason))
        } else {
            StageEvent::Wait(reason)
        };
        self.apply(&mut tx, event).await?;
        tx.commit().await?;
        Ok(Next::Wait)
    }

    pub(super) async fn succeed(&self, mut tx: Tx, reason: Option<String>) -> anyhow::Result<Next> {
        self.apply(&mut tx, StageEvent::Succeed(reason)).await?;
        tx.commit().await?;
        Ok(Next::Again)
    }

    pub(super) async fn fail(&self, mut tx: Tx, reason: String) -> anyhow::Result<Next> {
        let d = &self.deployment;
        self.apply(&mut tx, StageEvent::Fail(reason.clone()))
            .await?;
        AuditRecord::new(Actor::system(), "deployment.failed", &Origin::default())
            .target(format!("{}/{}#{}", d.project, d.environment, d.number))
            .details(json!({ "release": d.version, "stage": self.stage.name, "reason": reason }))
            .write(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Next::Again)
    }

    /// Where the environment's site is: its declared `url` when that is a path, else
    /// `/env/<project>/<environment>/`.
    pub(super) async fn site_path(&self, tx: &mut Tx) -> anyhow::Result<String> {
        let env =
            environment::find(tx, &self.deployment.project, &self.deployment.environment).await?;
        Ok(domain::site::path_for(
            env.url.as_deref(),
            &self.deployment.project,
            &self.deployment.environment,
        ))
    }

    /// The environment a job of this deployment runs with.
    async fn job_env(&self, tx: &mut Tx) -> anyhow::Result<BTreeMap<String, String>> {
        let d = &self.deployment;
        let base = self.deployer.public_url.trim_end_matches('/');
        let path = self.site_path(tx).await?;
        let mut env = BTreeMap::from([
            ("BASE_URL".to_string(), format!("{base}{path}")),
            ("FLIGHTDECK_ENVIRONMENT".to_string(), d.environment.clone()),
            ("FLIGHTDECK_RELEASE".to_string(), d.version.clone()),
            ("FLIGHTDECK_DEPLOYMENT".to_string(), d.number.to_string()),
            ("GIT_COMMIT".to_string(), d.commit_sha.clone()),
            ("FLIGHTDECK_PUBLIC_URL".to_string(), base.to_string()),
        ]);
        env.extend(
            self.deployer
                .world
                .job_env(&self.deployer.portal, d)
                .await?,
        );
        Ok(env)
    }

    /// Runs the stage's jobs as a run of the CI engine: starts it the first time, then waits
    /// for its outcome. Returns Some(tx) once the run succeeded.
    pub(super) async fn job_step(
        &self,
        mut tx: Tx,
        plan: &domain::run::plan::PlannedStage,
    ) -> anyhow::Result<Result<Tx, Next>> {
        let now = self.now();
        match jobs::stage_run(&mut tx, self.stage.id).await? {
            None => {
                let env = self.job_env(&mut tx).await?;
                let number = jobs::start_stage_run(
                    &mut tx,
                    &self.deployment,
                    self.stage.id,
                    plan,
                    &env,
                    now,
                )
                .await?;
                store::step_started(
                    &mut tx,
                    self.stage.id,
                    "jobs",
                    json!({ "run": number }),
                    now,
                )
                .await?;
                tx.commit().await?;
                super::crash_point("jobs");
                Ok(Err(Next::Wait))
            }
            Some((_, state, _)) if !state.is_finished() => Ok(Err(Next::Wait)),
            Some((number, RunState::Succeeded, _)) => {
                store::step_finished(
                    &mut tx,
                    self.stage.id,
                    "jobs",
                    true,
                    json!({ "run": number }),
                    now,
                )
                .await?;
                Ok(Ok(tx))
            }
            Some((number, state, failures)) => {
                store::step_finished(
                    &mut tx,
                    self.stage.id,
                    "jobs",
                    false,
                    json!({ "run": number }),
                    now,
                )
                .await?;
                let why = failures.unwrap_or_else(|| state.as_str().to_string());
                Ok(Err(self
                    .fail(tx, format!("run #{number} {}: {why}", state.as_str()))
                    .await?))
            }
        }
    }

    async fn deploy(
        &self,
        mut tx: Tx,
        publish: &[String],
        migrate: Option<&str>,
        job: Option<&domain::run::plan::PlannedStage>,
    ) -> anyhow::Result<Next> {
        let d = &self.deployment;
        let now = self.now();
        if self.stage.record.state != RunState::Running {
            // Protection: the approvals of other people, then the window — checked when the
            // deploy actually starts, not when it was queued.
            let env = environment::find(&mut tx, &d.project, &d.environment).await?;
            let required = env.protection.required_approvals;
            if required > 0 {
                let given = decide::approvals_of(&mut tx, &self.stage).await?;
                if given.len() < usize::from(required) {
                    let members = environment::members(&mut tx).await?;
                    let who = approvers(&env.rules(), &d.triggered_by, &given, required, &members);
                    return self
                        .wait(
                            tx,
                            format!(
                                "{} of {required} {} by someone other than {}: {}",
                                given.len(),
                                if required == 1 {
                                    "approval"
                                } else {
                                    "approvals"
                                },
                                d.triggered_by,
                                who.describe()
                            ),
                        )
                        .await;
                }
            }
            if let Some(window) = &env.deploy_window
                && !window.is_open(now)
                && d.window_overridden_by.is_none()
            {
                let opens = window
                    .next_opening(now)
                    .map(|t| t.format("%a %-d %b %H:%M %Z").to_string())
                    .unwrap_or_else(|| "never".into());
                return self
                    .wait(
                        tx,
                        format!(
                            "outside the deploy window (next opens {opens}); a release manager may override it with a reason"
                        ),
                    )
                    .await;
            }
            self.running(&mut tx).await?;
            tx.commit().await?;
            return Ok(Next::Again);
        }
        // Expand first: the database gets the new release's migrations, then the API its new
        // code, then browsers the new site — each step works with what came before it.
        if let Some(artifact) = migrate {
            tx = match self.migrate_step(tx, artifact, true).await? {
                Some(tx) => tx,
                None => return Ok(Next::Again),
            };
        }
        if let Some(plan) = job {
            tx = match self.job_step(tx, plan).await? {
                Ok(tx) => tx,
                Err(next) => return Ok(next),
            };
        }
        let config = self.runtime_config(&mut tx).await?;
        sqlx::query!(
            "update deployment set runtime_config = $2 where deployment_id = $1",
            d.id.0,
            config
        )
        .execute(&mut *tx)
        .await?;
        if !publish.is_empty() {
            tx = match self.publish_step(tx, publish).await? {
                Some(tx) => tx,
                None => return Ok(Next::Again),
            };
        }
        let snapshot = store::make_current(&mut tx, d, now).await?;
        AuditRecord::new(Actor::system(), "deployment.deployed", &Origin::default())
            .target(format!("{}/{}#{}", d.project, d.environment, d.number))
            .details(json!({
                "release": d.version,
                "flag_snapshot": snapshot,
                "runtime_config": config,
            }))
            .write(&mut *tx)
            .await?;
        self.succeed(tx, Some(format!("{} runs in {}", d.version, d.environment)))
            .await
    }

    /// The runtime configuration file the deployment writes next to the site (`config.json`)
    /// and records: where the app's API is, which release and environment this is, and the
    /// monitoring agent's settings.
    async fn runtime_config(&self, tx: &mut Tx) -> anyhow::Result<serde_json::Value> {
        let d = &self.deployment;
        let position = super::world::environment_position(tx, d).await?;
        let api_base = self.deployer.world.api_base(position);
        let path = self.site_path(tx).await?;
        Ok(json!({
            "api_base": api_base,
            "release": d.version,
            "environment": d.environment,
            "commit": d.commit_sha,
            "site": path,
            "monitoring": {
                "dsn": null,
                "release": format!("{}@{}", d.project, d.version),
                "environment": d.environment,
                "sample_rate": 1.0,
            },
        }))
    }

    /// A step that touches the world, done once: recorded as started (committed), done outside
    /// the lock, recorded as finished. Returns Some(tx) (a fresh transaction, deployment locked)
    /// when it is done, None when the stage failed (it is saved) or the lease was lost.
    pub(super) async fn world_step<F, Fut>(
        &self,
        mut tx: Tx,
        name: &str,
        work: F,
    ) -> anyhow::Result<Option<Tx>>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<serde_json::Value>>,
    {
        if let Some(StepState::Done(_)) = store::step(&mut tx, self.stage.id, name).await? {
            return Ok(Some(tx));
        }
        let now = self.now();
        store::step_started(&mut tx, self.stage.id, name, json!({}), now).await?;
        tx.commit().await?;
        let result = self.renewing_lease(work()).await;
        super::crash_point(name);
        let now = self.now();
        let mut tx = self.deployer.portal.pool.begin().await?;
        store::lock(&mut tx, self.deployment.id).await?;
        if !store::holds(&mut tx, self.deployment.id, self.deployer.driver, now).await? {
            // Another replica took over; it redoes the unfinished step.
            return Ok(None);
        }
        match result {
            Ok(detail) => {
                store::step_finished(&mut tx, self.stage.id, name, true, detail, now).await?;
                Ok(Some(tx))
            }
            Err(error) => {
                let reason = format!("{error:#}");
                store::step_finished(
                    &mut tx,
                    self.stage.id,
                    name,
                    false,
                    json!({ "error": reason }),
                    now,
                )
                .await?;
                self.fail(tx, format!("{name}: {reason}")).await?;
                Ok(None)
            }
        }
    }

    /// Waits for a world step's work while renewing this replica's lease every tick: the
    /// deployer's own renewal (its claim) waits for the step, and a step that outlasted the
    /// lease would otherwise be taken over and done a second time beside it by another replica,
    /// or redone by this one once it found its lease gone.
    async fn renewing_lease<T>(&self, work: impl std::future::Future<Output = T>) -> T {
        tokio::pin!(work);
        // The lease was renewed when the deployment was claimed: the first renewal is a tick on.
        let mut beat =
            tokio::time::interval_at(tokio::time::Instant::now() + super::TICK, super::TICK);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                result = &mut work => return result,
                _ = beat.tick() => {
                    let until = self.now() + chrono::Duration::seconds(super::LEASE_SECS);
                    let renewed = match self.deployer.portal.pool.acquire().await {
                        Ok(mut conn) => {
                            store::renew(&mut conn, self.deployment.id, self.deployer.driver, until).await
                        }
                        Err(error) => Err(error),
                    };
                    if let Err(error) = renewed {
                        tracing::warn!(deployment = %self.deployment.id, %error, "could not renew the lease during a step");
                    }
                }
            }
        }
    }

    async fn migrate_step(
        &self,
        tx: Tx,
        artifact: &str,
        backup: bool,
    ) -> anyhow::Result<Option<Tx>> {
        let world = self.deployer.world.clone();
        let portal = self.deployer.portal.clone();
        let d = self.deployment.clone();
        let artifact = artifact.to_string();
        self.world_step(tx, "migrate", move || async move {
            world.migrate(&portal, &d, &artifact, backup).await
        })
        .await
    }

    async fn publish_step(&self, mut tx: Tx, artifacts: &[String]) -> anyhow::Result<Option<Tx>> {
        let world = self.deployer.world.clone();
        let d = self.deployment.clone();
        let artifacts = artifacts.to_vec();
        let config = sqlx::query_scalar!(
            "select runtime_config from deployment where deployment_id = $1",
            d.id.0
        )
        .fetch_one(&mut *tx)
        .await?;
        let config = match config {
            Some(config) => config,
            None => self.runtime_config(&mut tx).await?,
        };
        let portal = self.deployer.portal.clone();
        self.world_step(tx, "publish", move || async move {
            world.publish(&portal, &d, &artifacts, config).await
        })
        .await
    }

    async fn jobs(&self, tx: Tx, plan: &domain::run::plan::PlannedStage) -> anyhow::Result<Next> {
        let Some(tx) = self.started(tx).await? else {
            return Ok(Next::Again);
        };
        match self.job_step(tx, plan).await? {
            Ok(tx) => self.succeed(tx, None).await,
            Err(next) => Ok(next),
        }
    }

    async fn manual(&self, mut tx: Tx, path: Option<&str>) -> anyhow::Result<Next> {
        let d = &self.deployment;
        if self.stage.outcome.get("items").is_none() {
            let items = match path {
                Some(path) => {
                    let repository = sqlx::query_scalar!(
                        "select repository from project where project_id = $1",
                        d.project_id
                    )
                    .fetch_one(&mut *tx)
                    .await?
                    .context("the project has no repository to read the checklist from")?;
                    let text = domain::run::git::file_at(&repository, &d.commit_sha, path)
                        .await?
                        .with_context(|| {
                            format!("the release's commit has no checklist file {path}")
                        });
                    match text {
                        Ok(text) => checklist::parse(&text),
                        Err(error) => return self.fail(tx, format!("{error:#}")).await,
                    }
                }
                None => Vec::new(),
            };
            let items = if items.is_empty() {
                vec![checklist::Item {
                    number: 1,
                    text: format!("{} is done", self.stage.title),
                    section: None,
                }]
            } else {
                items
            };
            store::set_outcome(&mut tx, self.stage.id, &json!({ "items": items })).await?;
        }
        let total = self
            .stage
            .outcome
            .get("items")
            .and_then(|i| i.as_array())
            .map(|a| a.len());
        let total = match total {
            Some(total) => total,
            None => {
                tx.commit().await?;
                return Ok(Next::Again);
            }
        };
        let ticked = decide::ticked_items(&mut tx, &self.stage).await?.len();
        self.wait(
            tx,
            format!("{ticked} of {total} checklist items ticked; QA, developers or release managers tick them"),
        )
        .await
    }

    async fn gate(
        &self,
        mut tx: Tx,
        role: domain::role::Role,
        approvals: u8,
    ) -> anyhow::Result<Next> {
        let d = &self.deployment;
        let given = decide::approvals_of(&mut tx, &self.stage).await?;
        let members: Vec<String> = environment::members(&mut tx)
            .await?
            .into_iter()
            .filter(|m| {
                (m.role == role || m.role == domain::role::Role::Admin)
                    && m.name != d.triggered_by
                    && !given.contains(&m.name)
            })
            .map(|m| m.name)
            .collect();
        let needed = usize::from(approvals).saturating_sub(given.len());
        let who = match members.as_slice() {
            [] => format!(
                "no {} who did not deploy it exists: add one under People",
                role.label()
            ),
            names if names.len() <= 3 => format!("waiting for {}", names.join(" or ")),
            names => format!(
                "waiting for {} or {} others",
                names[..2].join(", "),
                names.len() - 2
            ),
        };
        self.wait(
            tx,
            match needed {
                1 => format!("one {} approval wanted; {who}", role.label()),
                n => format!("{n} {} approvals wanted; {who}", role.label()),
            },
        )
        .await
    }

    async fn flags(
        &self,
        tx: Tx,
        environment: &str,
        set: &[domain::deployment::FlagSettingSpec],
    ) -> anyhow::Result<Next> {
        let Some(mut tx) = self.started(tx).await? else {
            return Ok(Next::Again);
        };
        let d = &self.deployment;
        let reason = format!(
            "deployment #{} of {}: {}",
            d.number, d.version, self.stage.name
        );
        let settings: Vec<domain::definition::FlagSetting> = set
            .iter()
            .map(|s| domain::definition::FlagSetting {
                flag: s.flag.clone(),
                enabled: s.enabled,
                rollout: s.rollout,
            })
            .collect();
        let target = environment::find(&mut tx, &d.project, environment).await?;
        // A savepoint: a refused setting fails the stage without undoing the lock we hold.
        let mut savepoint = sqlx::Acquire::begin(&mut *tx).await?;
        let applied = domain::flags::store::apply_settings(
            &mut savepoint,
            target.id,
            &settings,
            Actor::system(),
            &Origin::default(),
            &reason,
        )
        .await;
        match applied {
            Ok(applied) => {
                savepoint.commit().await?;
                if target.id.0 == d.environment_id {
                    // What the environment runs with at the end of the deployment (a rollback
                    // to this release restores it).
                    sqlx::query!(
                        "update deployment set flag_snapshot_version = $2 where deployment_id = $1",
                        d.id.0,
                        applied.version
                    )
                    .execute(&mut *tx)
                    .await?;
                }
                store::set_outcome(
                    &mut tx,
                    self.stage.id,
                    &json!({
                        "flag_snapshot": applied.version,
                        "changed": applied.changed,
                        "created": applied.created,
                    }),
                )
                .await?;
                let words = if applied.changed {
                    format!("flags set in {environment}; snapshot #{}", applied.version)
                } else {
                    format!(
                        "the flags were already so in {environment} (snapshot #{})",
                        applied.version
                    )
                };
                self.succeed(tx, Some(words)).await
            }
            Err(error) => {
                savepoint.rollback().await?;
                self.fail(tx, format!("could not set the flags: {error}"))
                    .await
            }
        }
    }

    /// Until health data arrives (the [Health] work), a check has nothing to measure: it says
    /// so and waits for a release manager to pass or fail it with a reason — never a green that
    /// nothing measured.
    async fn check(&self, tx: Tx) -> anyhow::Result<Next> {
        self.wait(
            tx,
            "inconclusive: no sessions yet — a release manager passes or fails it with a reason"
                .into(),
        )
        .await
    }
}
