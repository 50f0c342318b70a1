//! Releases: what a green run of the default branch makes, and what deployments move from
//! environment to environment.
//!
//! A release is made in the transaction that sees its run succeed ([`store::on_run_succeeded`]),
//! so it exists exactly once per run whichever replica finished the last job. What needs the
//! repository or the artifact bytes (the commits since the previous release, the migrations in
//! its `db-schema` artifact) is read afterwards by the server ([`store::describe`]); until then
//! the page says so. The run's artifacts are pinned with it, so retention never deletes bytes a
//! deployment or a rollback still needs.

pub mod query;
pub mod store;

use crate::role::Role;

/// Who may edit release notes: the people who write them (developers, product managers) and
/// those who ship them.
pub fn may_edit_notes(role: Role) -> bool {
    matches!(
        role,
        Role::Developer | Role::Product | Role::ReleaseManager | Role::Admin
    )
}

/// Release notes made from commits: one line per commit subject, newest first, merges left out.
pub fn notes_from(commits: &[(String, String)]) -> String {
    let lines: Vec<String> = commits
        .iter()
        .filter(|(_, message)| !message.starts_with("Merge "))
        .map(|(author, message)| {
            let subject = message.lines().next().unwrap_or_default().trim();
            let name = author.split(" <").next().unwrap_or(author).trim();
            format!("- {subject} ({name})")
        })
        .collect();
    lines.join("\n")
}

/// Notes longer than this are refused (they are shown on a page and in an inbox).
pub const MAX_NOTES: usize = 20_000;

#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("there is no project `{0}`")]
    UnknownProject(String),
    #[error("project `{project}` has no release `{version}`")]
    UnknownRelease { project: String, version: String },
    #[error("{0}")]
    Refused(String),
    #[error("release notes are {0} characters long; the most is 20000")]
    NotesTooLong(usize),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_list_subjects_with_authors_and_skip_merges() {
        let notes = notes_from(&[
            (
                "Ana Lima <ana@example.org>".into(),
                "Remind 15 minutes before\n\nlonger text".into(),
            ),
            ("Bo <bo@example.org>".into(), "Merge branch 'x'".into()),
            ("Bo <bo@example.org>".into(), "Streak badge".into()),
        ]);
        assert_eq!(
            notes,
            "- Remind 15 minutes before (Ana Lima)\n- Streak badge (Bo)"
        );
    }

    #[test]
    fn product_managers_and_developers_edit_notes_viewers_do_not() {
        assert!(may_edit_notes(Role::Product));
        assert!(may_edit_notes(Role::Developer));
        assert!(!may_edit_notes(Role::Viewer));
        assert!(!may_edit_notes(Role::Qa));
    }
}
