//! Projects: loading a pipeline definition, the overview read model, and pausing schedules.

use crate::audit::{Actor, AuditRecord, Origin};
use crate::definition::{self, Definition, Diagnostic};
use crate::environment::{self, Acting, Action, Refusal, governance::GovernanceChange};
use crate::overview::{DefinitionInfo, LastRun, Overview, PauseInfo, ProjectLink, ProjectOverview};
use chrono::Utc;
use serde_json::json;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use uuid::Uuid;

pub mod repository;
pub(crate) mod view;

/// Parsed definitions by the SHA-256 of their text. A stored version never changes, so the
/// overview parses each one once per process instead of on every page view.
static PARSED: LazyLock<Mutex<HashMap<String, Arc<Definition>>>> = LazyLock::new(Default::default);

/// More versions than any process needs at once; past this the cache starts afresh.
const PARSED_CAPACITY: usize = 64;

fn parsed(sha256: &str, source: &str) -> Result<Arc<Definition>, Vec<Diagnostic>> {
    if let Some(found) = PARSED
        .lock()
        .ok()
        .and_then(|cache| cache.get(sha256).cloned())
    {
        return Ok(found);
    }
    let definition = Arc::new(definition::parse(source)?);
    if let Ok(mut cache) = PARSED.lock() {
        if cache.len() >= PARSED_CAPACITY {
            cache.clear();
        }
        cache.insert(sha256.to_string(), definition.clone());
    }
    Ok(definition)
}

/// The project's current definition, parsed (once per version per process).
pub async fn current_definition(
    pool: &PgPool,
    project: &str,
) -> Result<Option<Arc<Definition>>, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    current_definition_in(&mut conn, project).await
}

/// The same, on a connection the caller holds (inside its transaction).
pub async fn current_definition_in(
    conn: &mut PgConnection,
    project: &str,
) -> Result<Option<Arc<Definition>>, sqlx::Error> {
    let row = sqlx::query!(
        r#"select d.source, d.sha256 from project p
           join definition_version d on d.definition_version_id = p.current_definition_version_id
           where p.project_key = $1"#,
        project
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.and_then(|row| parsed(&row.sha256, &row.source).ok()))
}

/// Whether a push to `branch` starts a run: the current definition's `triggers.push.branches`
/// (the git hook's pushes and GitHub's webhook both ask). None when the project does not exist.
pub async fn push_starts_run(
    pool: &PgPool,
    project: &str,
    branch: &str,
) -> Result<Option<PushDecision>, sqlx::Error> {
    Ok(current_definition(pool, project).await?.map(|definition| {
        let patterns = definition.triggers().push_branches.clone();
        PushDecision {
            starts: definition.triggers().push_starts_run(branch),
            patterns,
        }
    }))
}

/// What a push to one branch does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushDecision {
    pub starts: bool,
    /// `triggers.push.branches`, for saying why not.
    pub patterns: Vec<String>,
}

impl PushDecision {
    /// Why a push to `branch` starts no run, in words.
    pub fn reason(&self, branch: &str) -> String {
        if self.patterns.is_empty() {
            format!(
                "pushes start no runs in this project (flightdeck.yml has no triggers.push.branches), so `{branch}` was not built"
            )
        } else {
            format!(
                "pushes to `{branch}` start no run: triggers.push.branches is [{}]",
                self.patterns.join(", ")
            )
        }
    }
}

/// The largest flightdeck.yml accepted (a real one is a few kilobytes).
pub const MAX_DEFINITION_BYTES: usize = 512 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum LoadDefinitionError {
    #[error("the definition is {0} bytes; the limit is {MAX_DEFINITION_BYTES}")]
    TooLarge(usize),
    #[error("the definition has {} error(s)", .0.len())]
    Invalid(Vec<Diagnostic>),
    #[error("this definition is for project `{found}`, not `{expected}`")]
    WrongProject { expected: String, found: String },
    /// The definition changes who may deploy, and the caller may not.
    #[error("{refusal}")]
    Refused {
        refusal: Box<Refusal>,
        changes: Vec<GovernanceChange>,
    },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// What loading a definition did.
#[derive(Debug, Clone, PartialEq)]
pub enum Loaded {
    /// It is the current definition now: a new version, or a stored one made current again.
    NewVersion {
        project_key: String,
        version: i64,
        /// What it changed in who may deploy (each audited with before and after).
        governance: Vec<GovernanceChange>,
    },
    /// The same text was already the current version; nothing changed.
    Unchanged { project_key: String, version: i64 },
}

/// What loading a definition would do, without doing it.
#[derive(Debug, Clone, PartialEq)]
pub struct Preview {
    pub project_key: String,
    /// False when the text is already the current version.
    pub changes_definition: bool,
    /// What it would change in who may deploy; loading it then needs a release manager.
    pub governance: Vec<GovernanceChange>,
}

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("there is no project `{0}`")]
    UnknownProject(String),
    #[error("project `{project}` has no schedule `{schedule}`")]
    UnknownSchedule { project: String, schedule: String },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// A flightdeck.yml to make a project's current definition.
#[derive(Debug, Clone, Copy)]
pub struct DefinitionUpload<'a> {
    pub source: &'a str,
    /// Where it came from, for people: a file path, "api".
    pub origin_label: &'a str,
    /// With it, a file for another project is refused.
    pub expected_project: Option<&'a str>,
}

/// Parses, validates and stores a project's flightdeck.yml and makes it the current definition,
/// creating the project on first load and syncing its environments, in one transaction with its
/// audit entries. Loading the current text again changes nothing; loading an earlier text makes
/// that stored version current again (versions never change or go away: runs refer to them). A
/// change to who may deploy needs [`Action::ChangeGovernance`].
pub async fn load_definition(
    pool: &PgPool,
    upload: DefinitionUpload<'_>,
    acting: &Acting,
    actor: Actor,
    origin: &Origin,
) -> Result<Loaded, LoadDefinitionError> {
    let parsed = check_upload(upload)?;
    let key = parsed.project().key.to_string();
    let sha = hex::encode(Sha256::digest(upload.source.as_bytes()));
    let mut tx = pool.begin().await?;
    let project_id = sqlx::query_scalar!(
        r#"insert into project (project_key, name, description) values ($1, $2, $3)
           on conflict (project_key) do update set name = excluded.name, description = excluded.description
           returning project_id"#,
        key,
        parsed.project().name,
        parsed.project().description,
    )
    .fetch_one(&mut *tx)
    .await?;
    // Serialise concurrent loads of one project so the pointer moves in order.
    let current = current_version(&mut tx, project_id).await?;
    if let Some(current) = current.as_ref().filter(|c| c.sha256 == sha) {
        tx.commit().await?;
        return Ok(Loaded::Unchanged {
            project_key: key,
            version: current.definition_version_id,
        });
    }
    let governance = governance_of(current.as_ref(), &parsed);
    if !governance.is_empty() {
        let rules = environment::Rules {
            environment: format!("project `{key}`"),
            ..environment::rules_in(&parsed, "")
        };
        environment::decide(&rules, acting, Action::ChangeGovernance).map_err(|refusal| {
            LoadDefinitionError::Refused {
                refusal: Box::new(refusal),
                changes: governance.clone(),
            }
        })?;
    }
    let stored = sqlx::query_scalar!(
        "select definition_version_id from definition_version where project_id = $1 and sha256 = $2",
        project_id,
        sha
    )
    .fetch_optional(&mut *tx)
    .await?;
    let version =
        match stored {
            Some(version) => version,
            None => sqlx::query_scalar!(
                r#"insert into definition_version (project_id, source, sha256, origin, loaded_by)
                   values ($1, $2, $3, $4, $5) returning definition_version_id"#,
                project_id,
                upload.source,
                sha,
                upload.origin_label,
                actor.name,
            )
            .fetch_one(&mut *tx)
            .await?,
        };
    sqlx::query!(
        "update project set current_definition_version_id = $2 where project_id = $1",
        project_id,
        version
    )
    .execute(&mut *tx)
    .await?;
    sync_environments(&mut tx, project_id, &parsed).await?;
    AuditRecord::new(actor.clone(), "definition.loaded", origin)
        .target(&key)
        .details(json!({
            "version": version,
            "sha256": sha,
            "origin": upload.origin_label,
            "stored_before": stored.is_some(),
            "before_version": current.as_ref().map(|c| c.definition_version_id),
            "before_sha256": current.as_ref().map(|c| c.sha256.clone()),
        }))
        .write(&mut *tx)
        .await?;
    if !governance.is_empty() {
        AuditRecord::new(actor, "definition.governance_changed", origin)
            .security()
            .target(&key)
            .details(json!({ "version": version, "changes": governance }))
            .write(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(Loaded::NewVersion {
        project_key: key,
        version,
        governance,
    })
}

/// What [`load_definition`] would change, without changing it.
pub async fn preview_definition(
    pool: &PgPool,
    upload: DefinitionUpload<'_>,
) -> Result<Preview, LoadDefinitionError> {
    let parsed = check_upload(upload)?;
    let key = parsed.project().key.to_string();
    let sha = hex::encode(Sha256::digest(upload.source.as_bytes()));
    let mut tx = pool.begin().await?;
    let project_id =
        sqlx::query_scalar!("select project_id from project where project_key = $1", key)
            .fetch_optional(&mut *tx)
            .await?;
    let current = match project_id {
        Some(id) => current_version(&mut tx, id).await?,
        None => None,
    };
    Ok(Preview {
        project_key: key,
        changes_definition: current.as_ref().is_none_or(|c| c.sha256 != sha),
        governance: governance_of(current.as_ref(), &parsed),
    })
}

fn check_upload(upload: DefinitionUpload<'_>) -> Result<Definition, LoadDefinitionError> {
    if upload.source.len() > MAX_DEFINITION_BYTES {
        return Err(LoadDefinitionError::TooLarge(upload.source.len()));
    }
    let parsed = definition::parse(upload.source).map_err(LoadDefinitionError::Invalid)?;
    let key = parsed.project().key.to_string();
    if let Some(expected) = upload.expected_project.filter(|e| *e != key) {
        return Err(LoadDefinitionError::WrongProject {
            expected: expected.to_string(),
            found: key,
        });
    }
    Ok(parsed)
}

struct CurrentVersion {
    definition_version_id: i64,
    sha256: String,
    source: String,
}

/// The project's current version, with the project's row locked until the transaction ends.
async fn current_version(
    tx: &mut Transaction<'_, Postgres>,
    project_id: Uuid,
) -> Result<Option<CurrentVersion>, sqlx::Error> {
    sqlx::query!(
        "select project_id from project where project_id = $1 for update",
        project_id
    )
    .fetch_one(&mut **tx)
    .await?;
    sqlx::query_as!(
        CurrentVersion,
        "select d.definition_version_id, d.sha256, d.source from project p
         join definition_version d on d.definition_version_id = p.current_definition_version_id
         where p.project_id = $1",
        project_id
    )
    .fetch_optional(&mut **tx)
    .await
}

fn governance_of(current: Option<&CurrentVersion>, parsed: &Definition) -> Vec<GovernanceChange> {
    current
        .and_then(|c| definition::parse(&c.source).ok())
        .map(|before| environment::governance::changes(&before, parsed))
        .unwrap_or_default()
}

/// Environments follow the definition: new ones are added, order is updated. Removed ones are
/// kept (with their history) but no longer shown.
async fn sync_environments(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    project_id: Uuid,
    parsed: &Definition,
) -> Result<(), sqlx::Error> {
    for (position, environment) in parsed.environments().iter().enumerate() {
        sqlx::query!(
            r#"insert into environment (project_id, name, position) values ($1, $2, $3)
               on conflict (project_id, name) do update set position = excluded.position"#,
            project_id,
            environment.name.as_str(),
            position as i32,
        )
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Every project, by name, as the navigation and the project switcher list them.
pub async fn links(pool: &PgPool) -> Result<Vec<ProjectLink>, sqlx::Error> {
    sqlx::query_as!(
        ProjectLink,
        r#"select p.project_key as key, p.name,
                  (select e.name from environment e where e.project_id = p.project_id
                    order by e.position limit 1) as first_environment
           from project p order by p.name"#
    )
    .fetch_all(pool)
    .await
}

/// The home page's data: the project list, and `project` (or the first one) in full.
pub async fn overview(
    pool: &PgPool,
    project: Option<&str>,
) -> Result<Option<Overview>, sqlx::Error> {
    let projects = links(pool).await?;
    let Some(chosen) = project.or(projects.first().map(|p| p.key.as_str())) else {
        return Ok(Some(Overview {
            projects,
            project: None,
        }));
    };
    let Some(row) = sqlx::query!(
        r#"select p.project_id, p.project_key, p.name, p.description,
                  d.definition_version_id, d.source, d.sha256, d.origin, d.loaded_by, d.loaded_at
           from project p
           join definition_version d on d.definition_version_id = p.current_definition_version_id
           where p.project_key = $1"#,
        chosen
    )
    .fetch_optional(pool)
    .await?
    else {
        return Ok(None);
    };
    let parsed = match parsed(&row.sha256, &row.source) {
        Ok(parsed) => parsed,
        Err(diagnostics) => {
            // Stored definitions were valid when loaded; a stricter later version may disagree.
            tracing::error!(project = %row.project_key, ?diagnostics, "stored definition no longer parses");
            return Ok(None);
        }
    };
    let environments = sqlx::query!(
        "select name, current_release, deployed_at from environment where project_id = $1",
        row.project_id
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|e| (e.name, (e.current_release, e.deployed_at)))
    .collect::<HashMap<_, _>>();
    let pauses = sqlx::query!(
        "select schedule_name, paused_by, paused_at from schedule_pause where project_id = $1",
        row.project_id
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|p| {
        (
            p.schedule_name,
            PauseInfo {
                by: p.paused_by,
                at: p.paused_at,
            },
        )
    })
    .collect::<HashMap<_, _>>();
    // Each stage as the newest run left it.
    let latest = sqlx::query!(
        r#"select s.name, s.state as "state: crate::state::RunState", r.number, r.finished_at
           from run r join run_stage s using (run_id)
           where r.project_id = $1 and r.number = (select max(number) from run where project_id = $1)"#,
        row.project_id
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|s| (s.name, (s.state, LastRun { number: s.number, finished_at: s.finished_at })))
    .collect::<HashMap<_, _>>();
    // Each declared artifact's newest build, so the page tells built from only declared.
    let built = sqlx::query!(
        r#"select distinct on (j.name, a.name) j.name as job, a.name, r.number, a.created_at
           from artifact a join job j using (job_id) join run r on r.run_id = a.run_id
           where a.project_id = $1
           order by j.name, a.name, a.created_at desc"#,
        row.project_id
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|a| {
        (
            (a.job, a.name),
            LastRun {
                number: a.number,
                finished_at: Some(a.created_at),
            },
        )
    })
    .collect::<HashMap<_, _>>();
    let flags = sqlx::query_scalar!(
        "select name from flag where project_id = $1 and archived_at is null",
        row.project_id
    )
    .fetch_all(pool)
    .await?
    .into_iter()
    .collect();
    let facts = view::PhaseFacts {
        latest,
        built,
        flags,
    };
    let mut environment_views = view::environments(&parsed, &environments);
    let active = crate::deployment::query::active(pool, row.project_id).await?;
    for view in &mut environment_views {
        view.in_progress = active.iter().find(|d| d.environment == view.name).cloned();
    }
    let mut schedule_views = view::schedules(&parsed, Utc::now(), &pauses);
    let paused = pauses.keys().cloned().collect();
    let mut would =
        crate::schedule::store::would_do(pool, row.project_id, &parsed, &paused).await?;
    let mut ticks = crate::schedule::store::last_ticks(pool, row.project_id).await?;
    for view in &mut schedule_views {
        view.would = would.remove(&view.name).unwrap_or_default();
        view.last_tick = ticks.remove(&view.name);
    }
    let project = ProjectOverview {
        key: row.project_key,
        name: row.name,
        description: row.description,
        definition: DefinitionInfo {
            version: row.definition_version_id,
            sha256: row.sha256,
            origin: row.origin,
            loaded_by: row.loaded_by,
            loaded_at: row.loaded_at,
        },
        phases: view::phases(&parsed, &facts),
        schedules: schedule_views,
        environments: environment_views,
    };
    Ok(Some(Overview {
        projects,
        project: Some(project),
    }))
}

/// Pauses or resumes a schedule. Doing what is already the case changes nothing and writes no
/// audit entry; returns whether anything changed.
pub async fn set_schedule_paused(
    pool: &PgPool,
    project_key: &str,
    schedule: &str,
    paused: bool,
    actor: Actor,
    origin: &Origin,
) -> Result<bool, ScheduleError> {
    let mut tx = pool.begin().await?;
    let row = sqlx::query!(
        r#"select p.project_id, d.source, d.sha256 from project p
           join definition_version d on d.definition_version_id = p.current_definition_version_id
           where p.project_key = $1 for update of p"#,
        project_key
    )
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| ScheduleError::UnknownProject(project_key.to_string()))?;
    let known = parsed(&row.sha256, &row.source)
        .map(|d| d.schedules().iter().any(|s| s.name.as_str() == schedule))
        .unwrap_or(false);
    if !known {
        return Err(ScheduleError::UnknownSchedule {
            project: project_key.into(),
            schedule: schedule.into(),
        });
    }
    let changed = if paused {
        sqlx::query!(
            "insert into schedule_pause (project_id, schedule_name, paused_by) values ($1, $2, $3)
             on conflict do nothing",
            row.project_id,
            schedule,
            actor.name
        )
        .execute(&mut *tx)
        .await?
        .rows_affected()
    } else {
        sqlx::query!(
            "delete from schedule_pause where project_id = $1 and schedule_name = $2",
            row.project_id,
            schedule
        )
        .execute(&mut *tx)
        .await?
        .rows_affected()
    } == 1;
    if changed {
        AuditRecord::new(
            actor,
            if paused {
                "schedule.paused"
            } else {
                "schedule.resumed"
            },
            origin,
        )
        .target(format!("{project_key}/{schedule}"))
        .details(json!({ "before": { "paused": !paused }, "after": { "paused": paused } }))
        .write(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(changed)
}
