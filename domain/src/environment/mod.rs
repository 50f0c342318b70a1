//! Environments: the places a release runs (development, staging, production). Each is a row
//! (its id, and what runs there now) plus what the project's *current* definition says of it
//! (url, protection, deploy window, database) — read through the project's current-definition
//! pointer, never from whichever definition a run last used.
//!
//! [`rules::decide`] is the one answer to "may this caller do this here, and who else must
//! approve?"; [`governance::changes`] says what a new definition changes in those rules.

pub mod governance;
pub mod rules;

pub use rules::{Acting, Action, Approvers, Member, Permit, Refusal, Rules, approvers, decide};

use crate::auth::Principal;
use crate::definition::{DatabaseTarget, Definition, DeployWindow, Protection, RollbackPolicy};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

/// An environment's id (the `environment` row).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, sqlx::Type,
)]
#[sqlx(transparent)]
pub struct EnvironmentId(pub Uuid);

impl fmt::Display for EnvironmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for EnvironmentId {
    type Err = uuid::Error;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(text).map(EnvironmentId)
    }
}

/// One environment as the current definition declares it, with what runs there now.
#[derive(Debug, Clone, PartialEq)]
pub struct Environment {
    pub id: EnvironmentId,
    pub project_id: Uuid,
    pub project: String,
    pub name: String,
    /// False for an environment an earlier definition declared and the current one dropped: it
    /// keeps its history and gets the default rules.
    pub declared: bool,
    pub url: Option<String>,
    pub protection: Protection,
    pub deploy_window: Option<DeployWindow>,
    pub database: Option<DatabaseTarget>,
    pub current_release: Option<String>,
    pub deployed_at: Option<DateTime<Utc>>,
    pub rollback: RollbackPolicy,
}

impl Environment {
    /// Its rules, for [`decide`].
    pub fn rules(&self) -> Rules {
        Rules {
            environment: self.name.clone(),
            protection: self.protection.clone(),
            rollback_roles: self.rollback.manual_roles.clone(),
        }
    }

    /// Whether `acting` may do `action` here, and how many others approve first.
    pub fn decide(&self, acting: &Acting, action: Action) -> Result<Permit, Refusal> {
        decide(&self.rules(), acting, action)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EnvironmentError {
    #[error("there is no project `{0}`")]
    UnknownProject(String),
    #[error("there is no environment {0}")]
    UnknownId(EnvironmentId),
    #[error("project `{project}` has no environment `{environment}`; its environments are {known}")]
    UnknownEnvironment {
        project: String,
        environment: String,
        known: String,
    },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Reads one environment of a project, with its rules from the current definition.
pub async fn find(
    conn: &mut PgConnection,
    project: &str,
    name: &str,
) -> Result<Environment, EnvironmentError> {
    let definition = crate::project::current_definition_in(&mut *conn, project)
        .await?
        .ok_or_else(|| EnvironmentError::UnknownProject(project.to_string()))?;
    let rows = sqlx::query!(
        r#"select e.environment_id, e.project_id, e.name, e.current_release, e.deployed_at
           from environment e join project p using (project_id)
           where p.project_key = $1 order by e.position"#,
        project
    )
    .fetch_all(&mut *conn)
    .await?;
    let Some(row) = rows.iter().find(|r| r.name == name) else {
        return Err(EnvironmentError::UnknownEnvironment {
            project: project.to_string(),
            environment: name.to_string(),
            known: rows
                .iter()
                .map(|r| format!("`{}`", r.name))
                .collect::<Vec<_>>()
                .join(", "),
        });
    };
    let declared = definition.environment(name);
    Ok(Environment {
        id: EnvironmentId(row.environment_id),
        project_id: row.project_id,
        project: project.to_string(),
        name: row.name.clone(),
        declared: declared.is_some(),
        url: declared.and_then(|e| e.url.clone()),
        protection: declared.map(|e| e.protection.clone()).unwrap_or_default(),
        deploy_window: declared.and_then(|e| e.deploy_window.clone()),
        database: declared.and_then(|e| e.database.clone()),
        current_release: row.current_release.clone(),
        deployed_at: row.deployed_at,
        rollback: definition.rollback().clone(),
    })
}

/// Reads one environment by id (the flag store and notifications name environments by id).
pub async fn find_by_id(
    conn: &mut PgConnection,
    id: EnvironmentId,
) -> Result<Environment, EnvironmentError> {
    let row = sqlx::query!(
        r#"select p.project_key, e.name from environment e join project p using (project_id)
           where e.environment_id = $1"#,
        id.0
    )
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(EnvironmentError::UnknownId(id))?;
    find(conn, &row.project_key, &row.name).await
}

/// Everyone with an enabled account and their role: who [`approvers`] chooses from.
pub async fn members(conn: &mut PgConnection) -> Result<Vec<Member>, sqlx::Error> {
    let rows =
        sqlx::query!("select username, role from app_user where not disabled order by username")
            .fetch_all(&mut *conn)
            .await?;
    rows.into_iter()
        .map(|r| {
            let role = r
                .role
                .parse()
                .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
            Ok(Member {
                name: r.username,
                role,
            })
        })
        .collect()
}

/// The rules of environment `name` in `definition` (the defaults where it is not declared).
pub fn rules_in(definition: &Definition, name: &str) -> Rules {
    Rules {
        environment: name.to_string(),
        protection: definition
            .environment(name)
            .map(|e| e.protection.clone())
            .unwrap_or_default(),
        rollback_roles: definition.rollback().manual_roles.clone(),
    }
}

impl Acting {
    /// The caller of a request.
    pub fn of(principal: &Principal) -> Acting {
        match principal {
            Principal::User(user) => Acting::Person {
                name: user.username.clone(),
                role: user.role,
            },
            Principal::Token(token) => Acting::Token {
                name: token.name.clone(),
            },
            Principal::Sdk(sdk) => Acting::Token {
                name: sdk.name.clone(),
            },
        }
    }
}
