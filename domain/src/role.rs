//! The roles a person (or an API token) can hold, and the sets of roles an action needs.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// What a person may do in the portal. Roles are not a ladder: QA and product approve different
/// gates. `Admin` may do everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Sees everything, changes nothing.
    Viewer,
    /// Triggers runs, re-runs jobs, loads pipeline definitions, edits non-production flags.
    Developer,
    /// Approves or rejects builds at the QA gate.
    Qa,
    /// Accepts releases at the user-acceptance gate.
    Product,
    /// Deploys, promotes, rolls back, pauses schedules, changes production flags.
    ReleaseManager,
    /// Manages people and tokens, and may do anything any other role may.
    Admin,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::Viewer,
        Role::Developer,
        Role::Qa,
        Role::Product,
        Role::ReleaseManager,
        Role::Admin,
    ];

    /// The name used in URLs, the CLI, YAML and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Developer => "developer",
            Role::Qa => "qa",
            Role::Product => "product",
            Role::ReleaseManager => "release-manager",
            Role::Admin => "admin",
        }
    }

    /// The name a person reads.
    pub fn label(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Developer => "developer",
            Role::Qa => "QA",
            Role::Product => "product manager",
            Role::ReleaseManager => "release manager",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A role name that is not one of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role `{0}`; the roles are viewer, developer, qa, product, release-manager, admin")]
pub struct UnknownRole(pub String);

impl FromStr for Role {
    type Err = UnknownRole;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownRole(s.to_string()))
    }
}

/// The roles allowed to do something. `Admin` is always allowed, so it is never listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoleSet(&'static [Role]);

impl RoleSet {
    /// Any signed-in person, viewers included.
    pub const ANYONE: RoleSet = RoleSet(&[
        Role::Viewer,
        Role::Developer,
        Role::Qa,
        Role::Product,
        Role::ReleaseManager,
    ]);
    pub const DEVELOPERS: RoleSet = RoleSet(&[Role::Developer, Role::ReleaseManager]);
    /// Who may start, cancel and re-run runs: the access table checks it, pages read it to
    /// offer only what will be allowed.
    pub const RUN_STARTERS: RoleSet = RoleSet::DEVELOPERS;
    pub const RELEASE_MANAGERS: RoleSet = RoleSet(&[Role::ReleaseManager]);
    pub const ADMINS: RoleSet = RoleSet(&[]);

    pub const fn of(roles: &'static [Role]) -> Self {
        RoleSet(roles)
    }

    pub fn allows(self, role: Role) -> bool {
        role == Role::Admin || self.0.contains(&role)
    }

    /// "release manager or admin": what a refusal tells the person they would need.
    pub fn describe(self) -> String {
        let mut names: Vec<&str> = self.0.iter().map(|r| r.label()).collect();
        names.push(Role::Admin.label());
        match names.len() {
            1 => names[0].to_string(),
            _ => {
                let last = names.pop().unwrap_or_default();
                format!("{} or {}", names.join(", "), last)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_role_round_trips_through_its_name() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn admin_is_always_allowed_and_viewers_only_where_anyone_is() {
        assert!(RoleSet::ADMINS.allows(Role::Admin));
        assert!(!RoleSet::ADMINS.allows(Role::ReleaseManager));
        assert!(RoleSet::ANYONE.allows(Role::Viewer));
        assert!(!RoleSet::DEVELOPERS.allows(Role::Viewer));
        assert_eq!(
            RoleSet::RELEASE_MANAGERS.describe(),
            "release manager or admin"
        );
        assert_eq!(RoleSet::ADMINS.describe(), "admin");
    }
}
