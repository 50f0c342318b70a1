//! Turns a checked definition (plus what the database knows) into the overview's view types.

use crate::definition::{Definition, Stage, StageKind};
use crate::overview::{
    ArtifactView, EnvironmentView, LastRun, PauseInfo, PhaseView, ScheduleView, StageView,
};
use crate::state::RunState;
use chrono::{DateTime, Utc};
use std::collections::{HashMap, HashSet};

/// How many future firings each schedule shows.
const NEXT_FIRES: usize = 5;

/// What the database knows beside the definition, for the phases.
#[derive(Debug, Default)]
pub struct PhaseFacts {
    /// Each stage's state in the newest run that reached it.
    pub latest: HashMap<String, (RunState, LastRun)>,
    /// The newest run that built each artifact, by (job, artifact name).
    pub built: HashMap<(String, String), LastRun>,
    /// The names of the project's flags that exist (not archived).
    pub flags: HashSet<String>,
}

/// The phases with each stage's state in the newest run, where it ran.
pub fn phases(definition: &Definition, facts: &PhaseFacts) -> Vec<PhaseView> {
    definition
        .phases()
        .iter()
        .map(|phase| PhaseView {
            name: phase.name.to_string(),
            title: phase.title.clone(),
            stages: phase.stages.iter().map(|s| stage(s, facts)).collect(),
            artifacts: phase
                .stages
                .iter()
                .flat_map(|s| s.jobs().iter())
                .flat_map(|job| {
                    job.artifacts.iter().map(|a| ArtifactView {
                        name: a.name.to_string(),
                        kind: a.kind,
                        job: job.name.to_string(),
                        built: facts
                            .built
                            .get(&(job.name.to_string(), a.name.to_string()))
                            .cloned(),
                    })
                })
                .collect(),
        })
        .collect()
}

fn stage(stage: &Stage, facts: &PhaseFacts) -> StageView {
    let latest = facts.latest.get(stage.name.as_str());
    let detail = match &stage.kind {
        StageKind::Manual(manual) => match (&stage.description, manual.hook) {
            (Some(d), _) => d.clone(),
            (None, Some(hook)) => format!("Runs in the {} git hook", hook.as_str()),
            (None, None) => "Done on the developer's machine".to_string(),
        },
        StageKind::Jobs(jobs) => {
            let names: Vec<String> = jobs.iter().map(|j| j.name.to_string()).collect();
            match names.len() {
                1 => format!("1 job: {}", names[0]),
                n => format!("{n} jobs: {}", names.join(", ")),
            }
        }
        StageKind::Gate(gate) => match gate.approvals {
            1 => format!("Approval by {}", gate.role.label()),
            n => format!("{n} approvals by {}", gate.role.label()),
        },
        StageKind::Deploy(deploy) => format!("Deploys to {}", deploy.environment),
        StageKind::Flags(flags) => flags_detail(flags, &facts.flags),
        StageKind::Check(check) => format!(
            "Watches {} health for {}",
            check.environment,
            humantime_short(check.window)
        ),
        StageKind::Publish(publish) => {
            let names: Vec<String> = publish.artifacts.iter().map(|a| a.to_string()).collect();
            format!("Publishes {} to {}", names.join(", "), publish.environment)
        }
        StageKind::Migrate(migrate) => format!(
            "Migrates the {} database{}",
            migrate.environment,
            if migrate.backup {
                " after a backup"
            } else {
                ""
            }
        ),
    };
    StageView {
        name: stage.name.to_string(),
        title: stage.title.clone(),
        kind: stage.kind.as_str().to_string(),
        detail,
        state: latest.map(|(state, _)| *state),
        last_run: latest.map(|(_, run)| run.clone()),
    }
}

/// What a flags stage will do when a release reaches it, and which of its flags do not exist
/// yet (the stage would set nothing for them).
fn flags_detail(flags: &crate::definition::FlagChange, existing: &HashSet<String>) -> String {
    if flags.set.is_empty() {
        return format!(
            "When a release gets here: applies its flag states in {}",
            flags.environment
        );
    }
    let settings: Vec<String> = flags
        .set
        .iter()
        .map(|s| match (s.enabled, s.rollout) {
            (false, _) => format!("{} off", s.flag),
            (true, Some(percent)) if percent < 100 => format!("{} on for {percent} %", s.flag),
            (true, _) => format!("{} on", s.flag),
        })
        .collect();
    let missing: Vec<&str> = flags
        .set
        .iter()
        .map(|s| s.flag.as_str())
        .filter(|name| !existing.contains(*name))
        .collect();
    let mut detail = format!(
        "When a release gets here: {} in {}",
        settings.join(", "),
        flags.environment
    );
    match missing.len() {
        0 => {}
        1 if flags.set.len() == 1 => detail.push_str(" (the flag does not exist yet)"),
        n if n == flags.set.len() => detail.push_str(" (none of these flags exists yet)"),
        _ => detail.push_str(&format!(" ({} does not exist yet)", missing.join(", "))),
    }
    detail
}

pub fn schedules(
    definition: &Definition,
    now: DateTime<Utc>,
    pauses: &HashMap<String, PauseInfo>,
) -> Vec<ScheduleView> {
    definition
        .schedules()
        .iter()
        .map(|schedule| {
            let action = match &schedule.action {
                crate::definition::ScheduleAction::Run { branch } => {
                    format!("Runs the pipeline on {branch}")
                }
                crate::definition::ScheduleAction::Promote { environment } => {
                    format!("Promotes the newest good release to {environment}")
                }
            };
            ScheduleView {
                name: schedule.name.to_string(),
                description: schedule.description.clone().unwrap_or(action),
                cron: schedule.cron.as_str().to_string(),
                timezone: schedule.timezone.name().to_string(),
                next_fires: schedule
                    .cron
                    .next_in(schedule.timezone, now, NEXT_FIRES)
                    .into_iter()
                    .map(|t| t.format("%a %d %b %Y, %H:%M %Z").to_string())
                    .collect(),
                paused: pauses.get(schedule.name.as_str()).cloned(),
                would: String::new(),
                last_tick: None,
            }
        })
        .collect()
}

pub fn environments(
    definition: &Definition,
    deployed: &HashMap<String, (Option<String>, Option<DateTime<Utc>>)>,
) -> Vec<EnvironmentView> {
    definition
        .environments()
        .iter()
        .map(|environment| {
            let (current_release, deployed_at) = deployed
                .get(environment.name.as_str())
                .cloned()
                .unwrap_or((None, None));
            let protection_text = protection_text(&environment.protection);
            EnvironmentView {
                name: environment.name.to_string(),
                url: environment.url.clone(),
                current_release,
                deployed_at,
                protection: protection_text,
                deploy_window: environment.deploy_window.as_ref().map(window_text),
                in_progress: None,
            }
        })
        .collect()
}

/// An environment's protection in words: "1 approval needed; deployed by release manager".
pub(crate) fn protection_text(protection: &crate::definition::Protection) -> String {
    let roles: Vec<&str> = protection.allowed_roles.iter().map(|r| r.label()).collect();
    match protection.required_approvals {
        0 => format!("deployed by {}", roles.join(" or ")),
        n => format!(
            "{n} approval{} needed; deployed by {}",
            if n == 1 { "" } else { "s" },
            roles.join(" or ")
        ),
    }
}

/// A deploy window in words: "At 02:00, on Sunday for 4h (Europe/Berlin)".
pub(crate) fn window_text(w: &crate::definition::DeployWindow) -> String {
    format!(
        "{} for {} ({})",
        w.opens.describe().trim_end_matches('.'),
        humantime_short(w.duration),
        w.timezone.name()
    )
}

/// "4h", "30m", "1h30m".
fn humantime_short(duration: std::time::Duration) -> String {
    let minutes = duration.as_secs() / 60;
    match (minutes / 60, minutes % 60) {
        (0, m) => format!("{m}m"),
        (h, 0) => format!("{h}h"),
        (h, m) => format!("{h}h{m}m"),
    }
}
