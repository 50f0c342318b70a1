//! The one decision about environments: may this caller do this action here, and how many other
//! people must approve first? Every adapter (server functions, REST handlers, the CLI, the
//! engine) asks [`decide`]; none decides on its own and passes a bool down.
//!
//! | action                | who may                                           | approvals by others |
//! |-----------------------|---------------------------------------------------|---------------------|
//! | change flags          | `protection.allowed_roles`, admins                | `required_approvals`|
//! | deploy / promote      | `protection.allowed_roles`, admins                | `required_approvals`|
//! | approve               | `protection.allowed_roles`, admins                | –                   |
//! | override approvals    | admins (with a reason, audited as security)       | –                   |
//! | override a window     | release managers, admins                          | –                   |
//! | roll back             | `rollback.manual.roles`, admins                   | – (never waits)     |
//! | download a backup     | `rollback.manual.roles`, admins (audited)         | –                   |
//! | decide a gate         | the gate's `role`, admins (never on a release     | the gate's count    |
//! |                       | one deployed or wrote: `decide::Ownership`)       |                     |
//! | tick a checklist      | QA, developers, release managers, admins          | –                   |
//! | pass/fail a check     | release managers, admins (with a reason)          | –                   |
//! | change governance     | release managers, admins                          | –                   |
//!
//! `required_approvals: 2` means two people other than the one asking, each counted once; who
//! else could still approve a request is [`approvers`], so that a page offers Approve only to
//! them and says so when there are too few (then an admin may override, with a reason).
//! API tokens hold no role,
//! so they are refused every action here. The operator — a person at the server's command line,
//! who can reach its database anyway — may do every action without waiting for approvals; the
//! audit log names them (OS user and host) as the actor, so it is recorded, not hidden.

use crate::definition::Protection;
use crate::role::Role;

/// Something done to an environment (or, for governance, to the rules themselves).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    ChangeFlags,
    Deploy,
    Approve,
    /// Letting a request through without the approvals it waits for (an admin, with a reason).
    OverrideApprovals,
    OverrideWindow,
    RollBack,
    /// Downloading a database backup or a rollback's safety dump: it holds the environment's
    /// data, so those trusted to take the data back (who may roll back) may read it.
    DownloadBackup,
    /// Changing an environment's protection or deploy window, or the rollback policy.
    ChangeGovernance,
    /// Approving or rejecting a release at a gate that asks for this role.
    DecideGate(Role),
    /// Ticking an item of a manual stage's checklist (or failing the stage with a note).
    TickChecklist,
    /// Passing or failing a health check that could not measure anything.
    JudgeCheck,
}

impl Action {
    fn phrase(self) -> &'static str {
        match self {
            Action::ChangeFlags => "change flags",
            Action::Deploy => "deploy",
            Action::Approve => "approve",
            Action::OverrideApprovals => "override the approvals a change waits for",
            Action::OverrideWindow => "override the deploy window",
            Action::RollBack => "roll back",
            Action::DownloadBackup => "download a database backup",
            Action::ChangeGovernance => {
                "change who may deploy (protection, deploy windows, the rollback policy)"
            }
            Action::DecideGate(_) => "approve or reject at this gate",
            Action::TickChecklist => "tick the manual test checklist",
            Action::JudgeCheck => "pass or fail a health check by hand",
        }
    }
}

/// Who is acting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acting {
    /// A signed-in person with a role.
    Person { name: String, role: Role },
    /// An API token: a machine, which holds scopes and no role.
    Token { name: String },
    /// A person at the server's command line (`flightdeck flags …`, `serve --project`).
    Operator { name: String },
}

impl Acting {
    pub fn name(&self) -> &str {
        match self {
            Acting::Person { name, .. } | Acting::Token { name } | Acting::Operator { name } => {
                name
            }
        }
    }
}

/// The rules one environment has: from its `protection` in the current definition and the
/// project's rollback policy. An environment the definition does not declare gets the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    pub environment: String,
    pub protection: Protection,
    /// Roles that may roll back by hand (`rollback.manual.roles`).
    pub rollback_roles: Vec<Role>,
}

/// Allowed; `approvals` other people must approve before it happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permit {
    pub approvals: u8,
}

/// Refused, with who may instead, in words a person reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{who} may not {what} in {environment}: {reason}")]
pub struct Refusal {
    pub who: String,
    pub what: &'static str,
    pub environment: String,
    pub reason: String,
    /// The roles that may, as a person reads them ("release manager or admin").
    pub allowed: String,
}

/// The decision. Pure: the rules come from the current definition, the caller from the request.
pub fn decide(rules: &Rules, acting: &Acting, action: Action) -> Result<Permit, Refusal> {
    let roles: Vec<Role> = match action {
        Action::ChangeFlags | Action::Deploy | Action::Approve => {
            rules.protection.allowed_roles.clone()
        }
        Action::OverrideApprovals => Vec::new(),
        Action::OverrideWindow | Action::ChangeGovernance => vec![Role::ReleaseManager],
        Action::RollBack | Action::DownloadBackup => rules.rollback_roles.clone(),
        Action::DecideGate(role) => vec![role],
        Action::TickChecklist => vec![Role::Qa, Role::Developer, Role::ReleaseManager],
        Action::JudgeCheck => vec![Role::ReleaseManager],
    };
    let approvals = match action {
        Action::ChangeFlags | Action::Deploy => rules.protection.required_approvals,
        _ => 0,
    };
    let allowed = who_may(&roles);
    let refuse = |reason: String| Refusal {
        who: acting.name().to_string(),
        what: action.phrase(),
        environment: rules.environment.clone(),
        reason,
        allowed: allowed.clone(),
    };
    match acting {
        Acting::Operator { .. } => Ok(Permit { approvals: 0 }),
        Acting::Token { .. } => Err(refuse(format!(
            "API tokens hold no role; the {allowed} role does this"
        ))),
        Acting::Person { role, .. } if *role == Role::Admin || roles.contains(role) => {
            Ok(Permit { approvals })
        }
        Acting::Person { role, .. } => Err(refuse(format!(
            "the {allowed} role does this; you are {}",
            with_article(role.label())
        ))),
    }
}

/// Someone with an enabled account, for "who else could approve?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub role: Role,
}

/// Who could still approve a request here: everyone the approve rule admits but the person who
/// asked and those who approved already.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approvers {
    /// Approvals still wanted.
    pub needed: u8,
    /// Who could give them, by name.
    pub candidates: Vec<String>,
    /// The roles that approve here, in words ("release manager or admin").
    pub roles: String,
}

/// Who could still approve a request of `requested_by` that `approved_by` approved so far and
/// that needs `required` approvals, among `members`: [`decide`] asked for each of them.
pub fn approvers(
    rules: &Rules,
    requested_by: &str,
    approved_by: &[String],
    required: u8,
    members: &[Member],
) -> Approvers {
    let given = approved_by.len().min(usize::from(required)) as u8;
    let candidates = members
        .iter()
        .filter(|m| m.name != requested_by && !approved_by.contains(&m.name))
        .filter(|m| {
            let acting = Acting::Person {
                name: m.name.clone(),
                role: m.role,
            };
            decide(rules, &acting, Action::Approve).is_ok()
        })
        .map(|m| m.name.clone())
        .collect();
    Approvers {
        needed: required - given,
        candidates,
        roles: who_may(&rules.protection.allowed_roles),
    }
}

impl Approvers {
    /// Whether enough people could still approve.
    pub fn enough(&self) -> bool {
        self.candidates.len() >= usize::from(self.needed)
    }

    /// Who the request waits for, or why it would wait forever and what to do about it.
    pub fn describe(&self) -> String {
        const ESCAPE: &str = "or an admin may override with a reason";
        let names = |names: &[String]| match names {
            [] => String::new(),
            [one] => one.clone(),
            [first @ .., last] if first.len() < 3 => format!("{} or {last}", first.join(", ")),
            [first @ .., _] => format!("{} or {} others", first[..2].join(", "), first.len() - 1),
        };
        match (self.needed, self.candidates.as_slice()) {
            (0, _) => "approved".to_string(),
            (_, []) => format!(
                "no other {} exists: add one under People, {ESCAPE}",
                self.roles
            ),
            (needed, candidates) if !self.enough() => format!(
                "only {} can approve and {needed} more approvals are needed: add another {} under People, {ESCAPE}",
                names(candidates),
                self.roles
            ),
            (1, candidates) => format!("waiting for {}", names(candidates)),
            (needed, candidates) => format!("waiting for {needed} of {}", names(candidates)),
        }
    }
}

/// "developer, QA, release manager or admin": the roles (admins always) as a person reads them.
pub fn who_may(roles: &[Role]) -> String {
    let mut names: Vec<&str> = roles
        .iter()
        .filter(|r| **r != Role::Admin)
        .map(|r| r.label())
        .collect();
    names.push(Role::Admin.label());
    match names.split_last() {
        Some((last, [])) => (*last).to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

fn with_article(label: &str) -> String {
    let article = if label.starts_with(['a', 'e', 'i', 'o', 'u', 'A', 'E', 'I', 'O', 'U']) {
        "an"
    } else {
        "a"
    };
    // "QA" reads as a letter name.
    let article = if label == "QA" { "a" } else { article };
    format!("{article} {label}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn production() -> Rules {
        Rules {
            environment: "production".into(),
            protection: Protection {
                required_approvals: 2,
                allowed_roles: vec![Role::ReleaseManager],
            },
            rollback_roles: vec![Role::ReleaseManager, Role::Developer],
        }
    }

    fn person(role: Role) -> Acting {
        Acting::Person {
            name: "pat".into(),
            role,
        }
    }

    #[test]
    fn the_allowed_roles_deploy_and_change_flags_with_the_required_approvals() {
        for action in [Action::Deploy, Action::ChangeFlags] {
            assert_eq!(
                decide(&production(), &person(Role::ReleaseManager), action),
                Ok(Permit { approvals: 2 })
            );
            assert_eq!(
                decide(&production(), &person(Role::Admin), action),
                Ok(Permit { approvals: 2 })
            );
            let refused = decide(&production(), &person(Role::Developer), action).unwrap_err();
            assert_eq!(refused.allowed, "release manager or admin");
            assert!(
                refused.to_string().contains("you are a developer"),
                "{refused}"
            );
        }
    }

    #[test]
    fn rollbacks_follow_the_rollback_policy_and_never_wait() {
        assert_eq!(
            decide(&production(), &person(Role::Developer), Action::RollBack),
            Ok(Permit { approvals: 0 })
        );
        assert!(decide(&production(), &person(Role::Qa), Action::RollBack).is_err());
    }

    #[test]
    fn windows_and_governance_are_for_release_managers_and_admins() {
        for action in [Action::OverrideWindow, Action::ChangeGovernance] {
            assert!(decide(&production(), &person(Role::ReleaseManager), action).is_ok());
            assert!(decide(&production(), &person(Role::Admin), action).is_ok());
            let mut open = production();
            open.protection.allowed_roles = Role::ALL.to_vec();
            assert!(decide(&open, &person(Role::Developer), action).is_err());
        }
    }

    #[test]
    fn tokens_are_refused_and_the_operator_is_allowed_without_waiting() {
        let token = Acting::Token { name: "ci".into() };
        let operator = Acting::Operator {
            name: "cli:root@host".into(),
        };
        for action in [
            Action::ChangeFlags,
            Action::Deploy,
            Action::Approve,
            Action::OverrideApprovals,
            Action::OverrideWindow,
            Action::RollBack,
            Action::ChangeGovernance,
        ] {
            assert!(decide(&production(), &token, action).is_err());
            assert_eq!(
                decide(&production(), &operator, action),
                Ok(Permit { approvals: 0 })
            );
        }
    }

    #[test]
    fn the_refusal_names_who_may() {
        assert_eq!(
            who_may(&[Role::Developer, Role::Qa]),
            "developer, QA or admin"
        );
        assert_eq!(who_may(&[Role::Admin]), "admin");
        assert_eq!(who_may(&[]), "admin");
        let refused = decide(&production(), &person(Role::Qa), Action::Deploy).unwrap_err();
        assert!(refused.to_string().contains("you are a QA"), "{refused}");
        let refused = decide(&production(), &person(Role::Viewer), Action::Approve).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "pat may not approve in production: the release manager or admin role does this; you are a viewer"
        );
    }

    #[test]
    fn only_admins_override_approvals() {
        let action = Action::OverrideApprovals;
        assert!(decide(&production(), &person(Role::Admin), action).is_ok());
        for role in [Role::ReleaseManager, Role::Developer, Role::Viewer] {
            let refused = decide(&production(), &person(role), action).unwrap_err();
            assert_eq!(refused.allowed, "admin");
        }
    }

    fn member(name: &str, role: Role) -> Member {
        Member {
            name: name.into(),
            role,
        }
    }

    #[test]
    fn approvers_are_the_other_people_the_rule_admits_who_have_not_approved_yet() {
        let members = [
            member("alice", Role::ReleaseManager),
            member("bob", Role::ReleaseManager),
            member("carol", Role::Admin),
            member("dave", Role::Developer),
            member("erin", Role::ReleaseManager),
        ];
        let approvers = approvers(&production(), "alice", &["erin".into()], 2, &members);
        assert_eq!(approvers.needed, 1);
        assert_eq!(approvers.candidates, ["bob", "carol"]);
        assert!(approvers.enough());
        assert_eq!(approvers.describe(), "waiting for bob or carol");
        let none_yet = super::approvers(&production(), "alice", &[], 2, &members);
        assert_eq!(none_yet.describe(), "waiting for 2 of bob, carol or erin");
    }

    #[test]
    fn a_lone_admin_is_told_who_could_approve_and_how_to_get_unstuck() {
        let members = [member("ann", Role::Admin), member("dave", Role::Developer)];
        let lone = approvers(&production(), "ann", &[], 1, &members);
        assert!(!lone.enough());
        assert_eq!(
            lone.describe(),
            "no other release manager or admin exists: add one under People, or an admin may override with a reason"
        );
        let members = [
            member("ann", Role::Admin),
            member("bob", Role::ReleaseManager),
        ];
        let short = approvers(&production(), "ann", &[], 2, &members);
        assert!(!short.enough());
        assert_eq!(
            short.describe(),
            "only bob can approve and 2 more approvals are needed: add another release manager or admin under People, or an admin may override with a reason"
        );
    }
}
