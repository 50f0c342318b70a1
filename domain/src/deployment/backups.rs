//! The database backups a deployment took — the pre-deploy `pg_dump` before its migrations, or
//! a rollback's safety dump of the data written since the deploy — as its page lists them, and
//! their download. A dump holds the environment's data, so only those who may roll the
//! environment back may download it ([`Action::DownloadBackup`]), and every download, or refusal,
//! is written to the audit log as a security event.

use super::DeploymentError;
use crate::audit::{Actor, AuditRecord, Origin, Outcome};
use crate::envdb::backup::{self, BackupId, BackupPurpose, DatabaseBackup};
use crate::environment::{self, Acting, Action, Environment};
use crate::release_view::BackupView;
use serde_json::json;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// The REST path that downloads a backup.
pub fn download_path(project: &str, id: BackupId) -> String {
    format!("/api/v1/projects/{project}/backups/{id}")
}

/// The backups deployment `deployment` took, oldest first, with a download link where `acting`
/// may download them.
pub async fn views(
    conn: &mut PgConnection,
    project: &str,
    deployment: Uuid,
    env: &Environment,
    acting: &Acting,
) -> Result<Vec<BackupView>, sqlx::Error> {
    let may = env.decide(acting, Action::DownloadBackup).is_ok();
    Ok(backup::for_deployment(conn, deployment)
        .await?
        .into_iter()
        .map(|b| BackupView {
            purpose: match b.purpose {
                BackupPurpose::PreDeploy => "before the migrations".into(),
                BackupPurpose::Safety => {
                    "safety dump: the database as the rollback found it".into()
                }
            },
            file_name: file_name(&b),
            database: b.database_name.clone(),
            size_bytes: b.size_bytes,
            sha256: b.sha256.clone(),
            created_at: b.created_at,
            kept_until: b.kept_until(),
            tables: b
                .tables
                .iter()
                .map(|t| {
                    let table = t.table.strip_prefix("public.").unwrap_or(&t.table);
                    format!("{table}: {} rows", t.live)
                })
                .collect(),
            download: may.then(|| download_path(project, b.id)),
        })
        .collect())
}

/// What a download sends: the file's name (`<database>-<when>-<purpose>.dump`) and the
/// recorded backup, whose storage key the adapter streams and whose checksum it sends along.
#[derive(Debug, Clone)]
pub struct Download {
    pub file_name: String,
    pub backup: DatabaseBackup,
}

/// `<database>-<when>-<purpose>.dump`, with anything but letters, digits, `.`, `-` and `_` in
/// the database's name (which a URL may spell any way) made `_`: it goes into a header.
fn file_name(b: &DatabaseBackup) -> String {
    let database: String = b
        .database_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "{}-{}-{}.dump",
        database,
        b.created_at.format("%Y%m%dT%H%M%SZ"),
        b.purpose.as_str()
    )
}

/// Lets `acting` download backup `id` of `project` (audited), or refuses (audited too).
pub async fn download(
    pool: &PgPool,
    project: &str,
    id: &str,
    acting: &Acting,
    actor: &Actor,
    origin: &Origin,
) -> Result<Download, DeploymentError> {
    let unknown = || DeploymentError::UnknownBackup {
        project: project.to_string(),
        id: id.to_string(),
    };
    let id = Uuid::parse_str(id).map_err(|_| unknown())?;
    let mut conn = pool.acquire().await?;
    let Some(found) = sqlx::query!(
        r#"select e.name as environment, d.number as "deployment?"
           from database_backup b join environment e using (environment_id)
           join project p on p.project_id = e.project_id
           left join deployment d on d.deployment_id = b.deployment_id
           where b.database_backup_id = $1 and p.project_key = $2"#,
        id,
        project
    )
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Err(unknown());
    };
    let env = environment::find(&mut conn, project, &found.environment).await?;
    let backup = backup::find(&mut conn, BackupId(id))
        .await?
        .ok_or_else(unknown)?;
    let audit = AuditRecord::new(actor.clone(), "database_backup.downloaded", origin)
        .security()
        .target(format!("{project}/{}", found.environment))
        .details(json!({
            "backup": id,
            "purpose": backup.purpose.as_str(),
            "database": backup.database_name,
            "sha256": backup.sha256,
            "deployment": found.deployment,
        }));
    if let Err(refusal) = env.decide(acting, Action::DownloadBackup) {
        audit
            .outcome(Outcome::Denied)
            .details(json!({ "backup": id, "reason": refusal.to_string() }))
            .write(&mut *conn)
            .await?;
        return Err(refusal.into());
    }
    audit.write(&mut *conn).await?;
    Ok(Download {
        file_name: file_name(&backup),
        backup,
    })
}
