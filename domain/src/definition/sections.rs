//! Checks the top-level sections around the phases: project, triggers, environments,
//! schedules and rollback.

use serde_saphyr::Spanned;

use super::diagnostic::did_you_mean;
use super::model::{
    AutomaticRollback, DatabaseTarget, DeployWindow, Environment, HealthThresholds, Project,
    Protection, RollbackPolicy, Schedule, ScheduleAction, Triggers,
};
use super::names::{EnvironmentName, ProjectKey, ScheduleName};
use super::raw::{
    Keyed, RawAutomatic, RawDatabase, RawEnvironment, RawProject, RawProtection, RawRollback,
    RawSchedule, RawThresholds, RawTriggers, RawWindow, Text,
};
use super::validate::{Checker, MAX_APPROVALS, all, optional};

impl Checker {
    pub(super) fn project(&mut self, raw: &RawProject) -> Option<Project> {
        let key = self.name(&raw.key, ProjectKey::parse);
        if raw.name.value.trim().is_empty() {
            self.error(&raw.name.referenced, "the project name is empty");
        }
        Some(Project {
            name: raw.name.value.trim().to_string(),
            key: key?,
            description: raw.description.clone(),
        })
    }

    pub(super) fn triggers(&mut self, raw: Option<&RawTriggers>) -> Triggers {
        let Some(raw) = raw else {
            return Triggers {
                push_branches: vec!["main".to_string()],
            };
        };
        let branches = raw.push.as_ref().map_or(&[][..], |p| &p.branches[..]);
        let push_branches = branches.iter().filter_map(|b| self.branch(b)).collect();
        Triggers { push_branches }
    }

    pub(super) fn branch(&mut self, text: &Text) -> Option<String> {
        self.word(
            text,
            "branch name",
            |c| !c.is_whitespace() && !c.is_control(),
            "a branch name has no spaces",
        )
    }

    pub(super) fn environments(
        &mut self,
        raw: Option<&Keyed<RawEnvironment>>,
    ) -> Option<Vec<Environment>> {
        let entries = raw.map_or(&[][..], |k| &k.0[..]);
        for (key, env) in entries {
            self.environments
                .insert(key.value.clone(), env.database.is_some());
            self.environment_order.push(key.value.clone());
        }
        all(entries
            .iter()
            .map(|(key, env)| self.environment(key, env))
            .collect())
    }

    fn environment(&mut self, key: &Text, raw: &RawEnvironment) -> Option<Environment> {
        let name = self.name(key, EnvironmentName::parse);
        let url_ok = raw.url.as_ref().is_none_or(|url| {
            let ok = ["/", "http://", "https://"]
                .iter()
                .any(|p| url.value.starts_with(p))
                && !url.value.contains(char::is_whitespace);
            if !ok {
                self.error(
                    &url.referenced,
                    format!(
                        "`{}` is not a URL; write an absolute URL (`https://staging.example.com`) \
                         or a path on this portal (`/env/{}/`)",
                        url.value, key.value
                    ),
                );
            }
            ok
        });
        let protection = match &raw.protection {
            None => Some(Protection::default()),
            Some(p) => self.protection(p),
        };
        let deploy_window = optional(raw.deploy_window.as_ref().map(|w| self.deploy_window(w)));
        let database = optional(raw.database.as_ref().map(|db| self.database(key, db)));
        if !url_ok {
            return None;
        }
        Some(Environment {
            name: name?,
            url: raw.url.as_ref().map(|u| u.value.clone()),
            protection: protection?,
            deploy_window: deploy_window?,
            database: database?,
        })
    }

    fn protection(&mut self, raw: &RawProtection) -> Option<Protection> {
        let approvals = optional(
            raw.required_approvals
                .as_ref()
                .map(|t| self.integer(t, "required_approvals", 0, MAX_APPROVALS)),
        );
        let roles = optional(
            raw.allowed_roles
                .as_ref()
                .map(|r| self.roles(&r.value, &r.referenced, "allowed_roles")),
        );
        let default = Protection::default();
        Some(Protection {
            required_approvals: u8::try_from(approvals?.unwrap_or(0)).ok()?,
            allowed_roles: roles?.unwrap_or(default.allowed_roles),
        })
    }

    fn deploy_window(&mut self, raw: &RawWindow) -> Option<DeployWindow> {
        let opens = self.cron(&raw.schedule);
        let duration = self.duration(&raw.duration);
        let timezone = self.timezone(&raw.timezone);
        Some(DeployWindow {
            opens: opens?,
            duration: duration?,
            timezone: timezone?,
        })
    }

    fn database(&mut self, key: &Text, raw: &Spanned<RawDatabase>) -> Option<DatabaseTarget> {
        match (&raw.value.url_env, &raw.value.name) {
            (Some(env), None) => self
                .variable(env, "environment variable name")
                .map(DatabaseTarget::UrlEnv),
            (None, Some(name)) => self
                .word(
                    name,
                    "database name",
                    |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_',
                    "use lower-case letters, digits and underscores",
                )
                .map(DatabaseTarget::Name),
            _ => {
                self.error(
                    &raw.referenced,
                    format!(
                        "the database of environment `{}` needs exactly one of `url_env` (the \
                         variable holding its URL) or `name` (a database on Flightdeck's server)",
                        key.value
                    ),
                );
                None
            }
        }
    }

    pub(super) fn schedules(&mut self, raw: Option<&Keyed<RawSchedule>>) -> Option<Vec<Schedule>> {
        let entries = raw.map_or(&[][..], |k| &k.0[..]);
        all(entries
            .iter()
            .map(|(key, s)| self.schedule(key, s))
            .collect())
    }

    fn schedule(&mut self, key: &Text, raw: &RawSchedule) -> Option<Schedule> {
        let name = self.name(key, ScheduleName::parse);
        let cron = self.cron(&raw.cron);
        let timezone = self.timezone(&raw.timezone);
        let subject = format!("schedule `{}`", key.value);
        let action = match raw.action.value.as_str() {
            "run" => {
                if let Some(env) = &raw.environment {
                    self.error(
                        &env.referenced,
                        format!(
                            "{subject} runs the pipeline, which has no environment; to deploy on \
                             a schedule, use `action: promote`"
                        ),
                    );
                }
                let branch = match &raw.branch {
                    Some(b) => self.branch(b),
                    None => Some("main".to_string()),
                };
                branch.map(|branch| ScheduleAction::Run { branch })
            }
            "promote" => {
                if let Some(branch) = &raw.branch {
                    self.error(
                        &branch.referenced,
                        format!(
                            "{subject} promotes a release, which is not tied to a branch; remove \
                             `branch`"
                        ),
                    );
                }
                match &raw.environment {
                    None => {
                        self.error(
                            &raw.action.referenced,
                            format!("{subject} promotes, but does not say to which `environment`"),
                        );
                        None
                    }
                    Some(env) => {
                        let environment = self.environment_ref(env, &subject);
                        if environment.is_some() {
                            self.needs_deploy.push((
                                env.value.clone(),
                                env.referenced,
                                subject.clone(),
                            ));
                        }
                        environment.map(|environment| ScheduleAction::Promote { environment })
                    }
                }
            }
            other => {
                let hint = did_you_mean(other, ["run", "promote"]);
                self.error(
                    &raw.action.referenced,
                    format!(
                        "`{other}` is not a schedule action; use `run` (start a run of a branch) \
                         or `promote` (deploy the newest good release to an environment){hint}"
                    ),
                );
                None
            }
        };
        Some(Schedule {
            name: name?,
            cron: cron?,
            timezone: timezone?,
            action: action?,
            description: raw.description.clone(),
        })
    }

    pub(super) fn thresholds(&mut self, raw: &RawThresholds) -> Option<HealthThresholds> {
        let crash_free = raw
            .crash_free_sessions_below
            .as_ref()
            .map(|t| self.percent(t, "crash_free_sessions_below"));
        let error_rate = raw
            .error_rate_above
            .as_ref()
            .map(|t| self.percent(t, "error_rate_above"));
        let latency = raw.p95_latency_above.as_ref().map(|t| self.duration(t));
        let min_sessions = raw
            .min_sessions
            .as_ref()
            .map(|t| self.integer(t, "min_sessions", 1, i64::from(u32::MAX)));
        Some(HealthThresholds {
            crash_free_sessions_below: optional(crash_free)?,
            error_rate_above: optional(error_rate)?,
            p95_latency_above: optional(latency)?,
            min_sessions: optional(min_sessions)?.and_then(|n| u32::try_from(n).ok()),
        })
    }

    pub(super) fn rollback(&mut self, raw: Option<&RawRollback>) -> Option<RollbackPolicy> {
        let default = RollbackPolicy::default();
        let Some(raw) = raw else {
            return Some(default);
        };
        let automatic = optional(raw.automatic.as_ref().map(|auto| self.automatic(auto)));
        let manual_roles = match &raw.manual {
            None => Some(default.manual_roles),
            Some(m) => self.roles(&m.roles.value, &m.roles.referenced, "manual.roles"),
        };
        let enabled = raw
            .automatic
            .as_ref()
            .is_some_and(|a| a.enabled.unwrap_or(true));
        Some(RollbackPolicy {
            automatic: automatic?.filter(|_| enabled),
            manual_roles: manual_roles?,
            restore_database: raw.restore_database.unwrap_or(default.restore_database),
            restore_flags: raw.restore_flags.unwrap_or(default.restore_flags),
        })
    }

    fn automatic(&mut self, raw: &RawAutomatic) -> Option<AutomaticRollback> {
        let window = self.duration(&raw.window);
        let environments = match &raw.environments {
            Some(names) => all(names
                .iter()
                .map(|n| self.environment_ref(n, "automatic rollback"))
                .collect()),
            None => all(self
                .environment_order
                .iter()
                .map(|n| EnvironmentName::parse(n).ok())
                .collect()),
        };
        let on = self.thresholds(&raw.on.value);
        if on.as_ref().is_some_and(HealthThresholds::is_empty) {
            self.error(
                &raw.on.referenced,
                "automatic rollback needs at least one of crash_free_sessions_below, \
                 error_rate_above or p95_latency_above",
            );
            return None;
        }
        Some(AutomaticRollback {
            environments: environments?,
            window: window?,
            on: on?,
        })
    }
}
