//! From the file as read ([`super::raw`]) to a checked [`Definition`], collecting every problem
//! on the way. Each check runs on its own value, so one bad value does not hide the next. This
//! module holds the checker and its checks of single values; the sections are checked in
//! [`super::sections`], phases and stages in [`super::stages`], [`super::kinds`] and
//! [`super::jobs`].

use std::collections::HashMap;
use std::time::Duration;

use chrono_tz::Tz;
use serde_saphyr::Location;

use super::diagnostic::{Diagnostic, did_you_mean};
use super::duration::parse_duration;
use super::model::Definition;
use super::names::{EnvironmentName, InvalidName, slugify};
use super::raw::{RawDefinition, Text};
use super::schedule::CronExpr;
use crate::role::Role;

/// The most approvals a gate or an environment may ask for.
pub(super) const MAX_APPROVALS: i64 = 10;

/// Collects diagnostics while values are checked one by one.
#[derive(Default)]
pub(super) struct Checker {
    diagnostics: Vec<Diagnostic>,
    /// Declared environments by name, with whether each has a database.
    pub(super) environments: HashMap<String, bool>,
    pub(super) environment_order: Vec<String>,
    /// Environments that some stage deploys to.
    pub(super) deployed: HashMap<String, String>,
    /// References that need a deploy stage for their environment, checked at the end:
    /// (environment, place, who refers to it).
    pub(super) needs_deploy: Vec<(String, Location, String)>,
}

pub(super) fn check(raw: &RawDefinition) -> Result<Definition, Vec<Diagnostic>> {
    let mut cx = Checker::default();
    let project = cx.project(&raw.project);
    let triggers = cx.triggers(raw.triggers.as_ref());
    let environments = cx.environments(raw.environments.as_ref());
    let phases = cx.phases(&raw.phases);
    let schedules = cx.schedules(raw.schedules.as_ref());
    let rollback = cx.rollback(raw.rollback.as_ref());
    cx.check_deploy_references();

    if !cx.diagnostics.is_empty() {
        let mut diagnostics = cx.diagnostics;
        diagnostics.sort_by_key(|d| (d.line, d.column));
        diagnostics.dedup();
        return Err(diagnostics);
    }
    match (project, environments, phases, schedules, rollback) {
        (Some(project), Some(environments), Some(phases), Some(schedules), Some(rollback)) => {
            Ok(Definition {
                project,
                triggers,
                environments,
                phases,
                schedules,
                rollback,
            })
        }
        // Every `None` above comes with a diagnostic, so this is only reached by a bug.
        _ => Err(vec![Diagnostic::new(
            1,
            1,
            "the definition could not be checked completely",
        )]),
    }
}

/// All of `items`, or `None` if any is missing. Takes every item first, so each was checked.
pub(super) fn all<T>(items: Vec<Option<T>>) -> Option<Vec<T>> {
    items.into_iter().collect()
}

/// An optional value after its check: absent is fine (`Some(None)`), present and bad is `None`.
pub(super) fn optional<T>(checked: Option<Option<T>>) -> Option<Option<T>> {
    match checked {
        None => Some(None),
        Some(value) => value.map(Some),
    }
}

impl Checker {
    pub(super) fn error(&mut self, at: &Location, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic::at(at, message));
    }

    /// A slug-like name, with a suggested spelling when it is not one.
    pub(super) fn name<N>(
        &mut self,
        text: &Text,
        parse: fn(&str) -> Result<N, InvalidName>,
    ) -> Option<N> {
        match parse(&text.value) {
            Ok(name) => Some(name),
            Err(e) => {
                let suggestion = slugify(&text.value);
                let hint = if parse(&suggestion).is_ok() {
                    format!(", like `{suggestion}`")
                } else {
                    String::new()
                };
                self.error(&text.referenced, format!("{e}{hint}"));
                None
            }
        }
    }

    /// A whole number within `min..=max`.
    pub(super) fn integer(&mut self, text: &Text, what: &str, min: i64, max: i64) -> Option<i64> {
        match text.value.trim().parse::<i64>() {
            Ok(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                self.error(
                    &text.referenced,
                    format!(
                        "{what} must be a whole number from {min} to {max}, not `{}`",
                        text.value
                    ),
                );
                None
            }
        }
    }

    /// A percentage from 0 to 100.
    pub(super) fn percent(&mut self, text: &Text, what: &str) -> Option<f64> {
        match text.value.trim().trim_end_matches('%').parse::<f64>() {
            Ok(p) if (0.0..=100.0).contains(&p) => Some(p),
            _ => {
                self.error(
                    &text.referenced,
                    format!(
                        "{what} must be a percentage from 0 to 100, not `{}`",
                        text.value
                    ),
                );
                None
            }
        }
    }

    pub(super) fn duration(&mut self, text: &Text) -> Option<Duration> {
        parse_duration(&text.value)
            .map_err(|e| self.error(&text.referenced, e.to_string()))
            .ok()
    }

    pub(super) fn role(&mut self, text: &Text) -> Option<Role> {
        match text.value.parse::<Role>() {
            Ok(role) => Some(role),
            Err(e) => {
                let hint = did_you_mean(&text.value, Role::ALL.iter().map(|r| r.as_str()));
                self.error(&text.referenced, format!("{e}{hint}"));
                None
            }
        }
    }

    /// A non-empty list of roles.
    pub(super) fn roles(&mut self, texts: &[Text], at: &Location, what: &str) -> Option<Vec<Role>> {
        if texts.is_empty() {
            self.error(at, format!("{what} is empty; name at least one role"));
            return None;
        }
        all(texts.iter().map(|t| self.role(t)).collect())
    }

    pub(super) fn cron(&mut self, text: &Text) -> Option<CronExpr> {
        CronExpr::parse(&text.value)
            .map_err(|e| self.error(&text.referenced, e.to_string()))
            .ok()
    }

    pub(super) fn timezone(&mut self, text: &Text) -> Option<Tz> {
        match text.value.parse::<Tz>() {
            Ok(zone) => Some(zone),
            Err(_) => {
                let names = chrono_tz::TZ_VARIANTS.iter().map(|z| z.name());
                let hint = did_you_mean(&text.value, names);
                self.error(
                    &text.referenced,
                    format!(
                        "`{}` is not an IANA time zone name, such as `Europe/Berlin` or `UTC`{hint}",
                        text.value
                    ),
                );
                None
            }
        }
    }

    /// A reference to a declared environment, from `subject` ("stage `deploy`").
    pub(super) fn environment_ref(
        &mut self,
        text: &Text,
        subject: &str,
    ) -> Option<EnvironmentName> {
        if self.environments.contains_key(&text.value) {
            return EnvironmentName::parse(&text.value).ok();
        }
        let hint = did_you_mean(
            &text.value,
            self.environment_order.iter().map(String::as_str),
        );
        let declared = if self.environment_order.is_empty() {
            "none are declared".to_string()
        } else {
            format!("declared: {}", self.environment_order.join(", "))
        };
        self.error(
            &text.referenced,
            format!(
                "{subject} names the environment `{}`, which is not declared under `environments` \
                 ({declared}){hint}",
                text.value
            ),
        );
        None
    }

    pub(super) fn environment_has_database(&self, name: &str) -> bool {
        self.environments.get(name).copied().unwrap_or(false)
    }

    /// A string with no whitespace made only of the characters `allowed` accepts.
    pub(super) fn word(
        &mut self,
        text: &Text,
        what: &str,
        allowed: fn(char) -> bool,
        rule: &str,
    ) -> Option<String> {
        let value = text.value.as_str();
        if !value.is_empty() && value.chars().all(allowed) {
            Some(value.to_string())
        } else {
            self.error(
                &text.referenced,
                format!("`{value}` is not a valid {what}: {rule}"),
            );
            None
        }
    }

    /// An environment variable or secret name.
    pub(super) fn variable(&mut self, text: &Text, what: &str) -> Option<String> {
        let starts_well = text
            .value
            .starts_with(|c: char| c.is_ascii_alphabetic() || c == '_');
        let name = self.word(
            text,
            what,
            |c| c.is_ascii_alphanumeric() || c == '_',
            "use letters, digits and underscores, not starting with a digit",
        )?;
        if !starts_well {
            self.error(
                &text.referenced,
                format!("`{name}` is not a valid {what}: it must not start with a digit"),
            );
            return None;
        }
        Some(name)
    }

    /// Every stage or schedule that acts on an environment after a deploy needs that deploy.
    fn check_deploy_references(&mut self) {
        for (env, at, subject) in std::mem::take(&mut self.needs_deploy) {
            if !self.deployed.contains_key(&env) {
                self.error(
                    &at,
                    format!(
                        "{subject} acts on environment `{env}`, but no stage deploys to it; add a \
                         stage with `deploy: {{ environment: {env} }}` before it"
                    ),
                );
            }
        }
    }
}
