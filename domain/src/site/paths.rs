//! Where each environment's site is served: the environment's `url` in its project's current
//! definition when that is a path under `/env/` (the sample declares `/env/staging/`), else
//! `/env/<project>/<environment>/`. Two environments claiming one path: the first project by
//! key (then the first environment in definition order) keeps it, and the other is reported.

use crate::environment::EnvironmentId;
use sqlx::PgConnection;

/// The prefix every site path starts with.
pub const SITES_PREFIX: &str = "/env/";

/// One environment's site path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SitePath {
    pub environment_id: EnvironmentId,
    pub project: String,
    pub environment: String,
    /// Starts with `/env/` and ends with `/`.
    pub path: String,
}

/// Every environment's path, and what could not have the path it asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SitePaths {
    pub paths: Vec<SitePath>,
    /// Said to the operator: "`b/staging` also claims /env/staging/, which `a/staging` has".
    pub conflicts: Vec<String>,
}

/// Reads every project's environments and current definition.
pub async fn paths(conn: &mut PgConnection) -> Result<SitePaths, sqlx::Error> {
    let rows = sqlx::query!(
        r#"select p.project_key, e.environment_id as "environment_id: EnvironmentId", e.name
           from environment e join project p using (project_id)
           order by p.project_key, e.position, e.name"#
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut out = SitePaths::default();
    let mut definition: Option<(
        String,
        Option<std::sync::Arc<crate::definition::Definition>>,
    )> = None;
    for row in rows {
        if definition
            .as_ref()
            .is_none_or(|(key, _)| *key != row.project_key)
        {
            let current =
                crate::project::current_definition_in(&mut *conn, &row.project_key).await?;
            definition = Some((row.project_key.clone(), current));
        }
        let url = definition
            .as_ref()
            .and_then(|(_, d)| d.as_ref())
            .and_then(|d| d.environment(&row.name))
            .and_then(|e| e.url.as_deref());
        let path = path_for(url, &row.project_key, &row.name);
        if let Some(holder) = out.paths.iter().find(|p| p.path == path) {
            out.conflicts.push(format!(
                "`{}/{}` also claims {path}, which `{}/{}` has; its site is not served",
                row.project_key, row.name, holder.project, holder.environment
            ));
            continue;
        }
        out.paths.push(SitePath {
            environment_id: row.environment_id,
            project: row.project_key,
            environment: row.name,
            path,
        });
    }
    Ok(out)
}

/// Where the site of `environment` of `project` is served, given the environment's declared
/// `url`: that url when it is a usable path under `/env/`, else `/env/<project>/<environment>/`.
pub fn path_for(url: Option<&str>, project: &str, environment: &str) -> String {
    url.and_then(declared_path)
        .unwrap_or_else(|| format!("{SITES_PREFIX}{project}/{environment}/"))
}

/// A declared `url` that is a usable site path (`/env/staging` or `/env/staging/`), ending in `/`.
fn declared_path(url: &str) -> Option<String> {
    let rest = url.strip_prefix(SITES_PREFIX)?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let fine = !rest.is_empty()
        && rest.split('/').all(|segment| {
            !segment.is_empty()
                && segment != "."
                && segment != ".."
                && segment
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        });
    fine.then(|| format!("{SITES_PREFIX}{rest}/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_declared_url_under_env_is_the_sites_path() {
        assert_eq!(
            declared_path("/env/staging/").as_deref(),
            Some("/env/staging/")
        );
        assert_eq!(
            declared_path("/env/staging").as_deref(),
            Some("/env/staging/")
        );
        assert_eq!(declared_path("/env/a/b/").as_deref(), Some("/env/a/b/"));
        assert_eq!(declared_path("https://staging.example.org/"), None);
        assert_eq!(declared_path("/env/"), None);
        assert_eq!(declared_path("/env/../admin/"), None);
        assert_eq!(declared_path("/env/a//b/"), None);
        assert_eq!(declared_path("/other/staging/"), None);
        assert_eq!(
            path_for(
                Some("https://staging.example.org/"),
                "studybuddy",
                "staging"
            ),
            "/env/studybuddy/staging/"
        );
        assert_eq!(path_for(None, "tiny", "dev"), "/env/tiny/dev/");
    }
}
