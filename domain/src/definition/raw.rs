//! The file as serde reads it: the shape of the YAML with the place of every value we check
//! later. Scalars we check ourselves (names, numbers, durations, roles) are read as text, so a
//! bad one becomes a diagnostic among others instead of stopping the parse.

use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_saphyr::Spanned;

/// A scalar as written, with its place.
pub(super) type Text = Spanned<String>;

/// A YAML map whose order matters, with the place of every key. Duplicate keys never reach
/// it: serde-saphyr refuses them while parsing.
#[derive(Debug)]
pub(super) struct Keyed<V>(pub Vec<(Text, V)>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Keyed<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyedVisitor<V>(PhantomData<V>);

        impl<'de, V: Deserialize<'de>> Visitor<'de> for KeyedVisitor<V> {
            type Value = Keyed<V>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<Text>()? {
                    entries.push((key, map.next_value()?));
                }
                Ok(Keyed(entries))
            }
        }

        deserializer.deserialize_map(KeyedVisitor(PhantomData))
    }
}

/// Reads a key that may be written without a value (`manual:`) as present.
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDefinition {
    pub project: RawProject,
    #[serde(default)]
    pub triggers: Option<RawTriggers>,
    #[serde(default)]
    pub environments: Option<Keyed<RawEnvironment>>,
    pub phases: Spanned<Keyed<RawPhase>>,
    #[serde(default)]
    pub schedules: Option<Keyed<RawSchedule>>,
    #[serde(default)]
    pub rollback: Option<RawRollback>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProject {
    pub name: Text,
    pub key: Text,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTriggers {
    #[serde(default)]
    pub push: Option<RawPush>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPush {
    pub branches: Vec<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEnvironment {
    #[serde(default)]
    pub url: Option<Text>,
    #[serde(default)]
    pub protection: Option<RawProtection>,
    #[serde(default)]
    pub deploy_window: Option<RawWindow>,
    #[serde(default)]
    pub database: Option<Spanned<RawDatabase>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProtection {
    #[serde(default)]
    pub required_approvals: Option<Text>,
    #[serde(default)]
    pub allowed_roles: Option<Spanned<Vec<Text>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWindow {
    pub schedule: Text,
    pub duration: Text,
    pub timezone: Text,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDatabase {
    #[serde(default)]
    pub url_env: Option<Text>,
    #[serde(default)]
    pub name: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPhase {
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    pub stages: Spanned<Keyed<RawStage>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStage {
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub needs: Option<Vec<Text>>,
    #[serde(default, deserialize_with = "present")]
    pub manual: Option<Option<RawManualStage>>,
    #[serde(default)]
    pub jobs: Option<Spanned<Keyed<RawJob>>>,
    #[serde(default)]
    pub gate: Option<RawGate>,
    #[serde(default)]
    pub deploy: Option<RawDeploy>,
    #[serde(default)]
    pub flags: Option<RawFlags>,
    #[serde(default)]
    pub check: Option<RawCheck>,
    #[serde(default)]
    pub publish: Option<RawPublish>,
    #[serde(default)]
    pub migrate: Option<RawMigrate>,
}

impl RawStage {
    /// The kind keys this stage has, in the order the format lists them.
    pub fn kinds(&self) -> Vec<&'static str> {
        [
            ("manual", self.manual.is_some()),
            ("jobs", self.jobs.is_some()),
            ("gate", self.gate.is_some()),
            ("deploy", self.deploy.is_some()),
            ("flags", self.flags.is_some()),
            ("check", self.check.is_some()),
            ("publish", self.publish.is_some()),
            ("migrate", self.migrate.is_some()),
        ]
        .into_iter()
        .filter_map(|(key, set)| set.then_some(key))
        .collect()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawManualStage {
    #[serde(default)]
    pub hook: Option<Text>,
    /// A markdown file in the repository whose numbered items people tick.
    #[serde(default)]
    pub checklist: Option<Text>,
    #[serde(default)]
    pub steps: Option<Vec<Spanned<RawStep>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawJob {
    #[serde(default)]
    pub steps: Option<Spanned<Vec<Spanned<RawStep>>>>,
    #[serde(default)]
    pub needs: Option<Vec<Text>>,
    #[serde(default)]
    pub runs_on: Option<Vec<Text>>,
    #[serde(default)]
    pub artifacts: Option<Vec<RawArtifact>>,
    #[serde(default)]
    pub timeout: Option<Text>,
    #[serde(default)]
    pub retries: Option<Text>,
    #[serde(default)]
    pub allow_failure: Option<bool>,
    #[serde(default)]
    pub optional: Option<bool>,
    #[serde(default)]
    pub env: Option<Keyed<Text>>,
    #[serde(default)]
    pub secrets: Option<Vec<Text>>,
}

/// A step: a plain command, or a map with `run` and an optional `name`.
#[derive(Debug)]
pub(super) struct RawStep {
    pub name: Option<String>,
    pub run: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStepMap {
    #[serde(default)]
    name: Option<String>,
    run: String,
}

impl<'de> Deserialize<'de> for RawStep {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StepVisitor;

        impl<'de> Visitor<'de> for StepVisitor {
            type Value = RawStep;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a shell command, or a map with `run` and an optional `name`")
            }

            fn visit_str<E: de::Error>(self, run: &str) -> Result<RawStep, E> {
                Ok(RawStep {
                    name: None,
                    run: run.to_string(),
                })
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawStep, A::Error> {
                let step = RawStepMap::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(RawStep {
                    name: step.name,
                    run: step.run,
                })
            }
        }

        deserializer.deserialize_any(StepVisitor)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawArtifact {
    pub name: Text,
    pub path: Text,
    pub kind: Text,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGate {
    pub role: Text,
    #[serde(default)]
    pub approvals: Option<Text>,
    #[serde(default)]
    pub admins_decide_own_releases: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDeploy {
    pub environment: Text,
    #[serde(default)]
    pub publish: Option<Spanned<Vec<Text>>>,
    #[serde(default)]
    pub migrate: Option<Text>,
    #[serde(default)]
    pub job: Option<Spanned<RawJob>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFlags {
    pub environment: Text,
    pub set: Spanned<Keyed<RawFlagSetting>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFlagSetting {
    pub enabled: bool,
    #[serde(default)]
    pub rollout: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCheck {
    pub environment: Text,
    pub window: Text,
    #[serde(default)]
    pub fail_on: Option<RawThresholds>,
    #[serde(default)]
    pub expect_events: Option<Vec<Text>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawThresholds {
    #[serde(default)]
    pub crash_free_sessions_below: Option<Text>,
    #[serde(default)]
    pub error_rate_above: Option<Text>,
    #[serde(default)]
    pub p95_latency_above: Option<Text>,
    #[serde(default)]
    pub min_sessions: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPublish {
    pub environment: Text,
    pub artifacts: Spanned<Vec<Text>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMigrate {
    pub environment: Text,
    pub artifact: Text,
    #[serde(default)]
    pub backup: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSchedule {
    pub cron: Text,
    pub timezone: Text,
    pub action: Text,
    #[serde(default)]
    pub environment: Option<Text>,
    #[serde(default)]
    pub branch: Option<Text>,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRollback {
    #[serde(default)]
    pub automatic: Option<RawAutomatic>,
    #[serde(default)]
    pub manual: Option<RawManual>,
    #[serde(default)]
    pub restore_database: Option<bool>,
    #[serde(default)]
    pub restore_flags: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAutomatic {
    #[serde(default)]
    pub enabled: Option<bool>,
    pub window: Text,
    #[serde(default)]
    pub environments: Option<Vec<Text>>,
    pub on: Spanned<RawThresholds>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawManual {
    pub roles: Spanned<Vec<Text>>,
}
