//! Which stages a deployment into an environment runs: the environment's deploy stage and every
//! stage after it in file order up to the next deploy stage. Pure; every stage kind becomes a
//! [`StageSpec`] and none is dropped.

use super::{DeploymentError, FlagSettingSpec, StageSpec};
use crate::definition::{Definition, StageKind, format_duration};
use crate::run::plan::plan_stage;

/// A stage of a deployment to be.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedDeploymentStage {
    pub name: String,
    pub title: String,
    pub spec: StageSpec,
}

/// The stages a deployment into `environment` runs, in order.
pub fn stages_for(
    definition: &Definition,
    environment: &str,
) -> Result<Vec<PlannedDeploymentStage>, DeploymentError> {
    let all: Vec<_> = definition.stages().collect();
    let start = all
        .iter()
        .position(
            |s| matches!(&s.kind, StageKind::Deploy(d) if d.environment.as_str() == environment),
        )
        .ok_or_else(|| DeploymentError::NoDeployStage(environment.to_string()))?;
    let mut planned = Vec::new();
    for (i, stage) in all[start..].iter().enumerate() {
        if i > 0 && matches!(stage.kind, StageKind::Deploy(_)) {
            break;
        }
        let spec = match &stage.kind {
            StageKind::Deploy(deploy) => StageSpec::Deploy {
                publish: deploy.publish.iter().map(|a| a.to_string()).collect(),
                migrate: deploy.migrate.as_ref().map(|a| a.to_string()),
                job: deploy.job.as_ref().map(|_| plan_stage(stage, &[])),
            },
            StageKind::Jobs(_) => StageSpec::Jobs {
                jobs: plan_stage(stage, &[]),
            },
            StageKind::Manual(manual) => StageSpec::Manual {
                checklist: manual.checklist.clone(),
            },
            StageKind::Gate(gate) => StageSpec::Gate {
                role: gate.role,
                approvals: gate.approvals,
                admins_decide_own_releases: gate.admins_decide_own_releases,
            },
            StageKind::Flags(flags) => StageSpec::Flags {
                environment: flags.environment.to_string(),
                set: flags
                    .set
                    .iter()
                    .map(|s| FlagSettingSpec {
                        flag: s.flag.clone(),
                        enabled: s.enabled,
                        rollout: s.rollout,
                    })
                    .collect(),
            },
            StageKind::Check(check) => {
                let t = &check.fail_on;
                let mut thresholds = Vec::new();
                if let Some(v) = t.crash_free_sessions_below {
                    thresholds.push(format!("fails if crash-free sessions fall below {v} %"));
                }
                if let Some(v) = t.error_rate_above {
                    thresholds.push(format!("fails if the error rate rises above {v} %"));
                }
                if let Some(v) = t.p95_latency_above {
                    thresholds.push(format!(
                        "fails if p95 latency exceeds {}",
                        format_duration(v)
                    ));
                }
                StageSpec::Check {
                    window_secs: check.window.as_secs(),
                    thresholds,
                    expect_events: check.expect_events.clone(),
                    min_sessions: t.min_sessions,
                }
            }
            StageKind::Publish(publish) => StageSpec::Publish {
                artifacts: publish.artifacts.iter().map(|a| a.to_string()).collect(),
            },
            StageKind::Migrate(migrate) => StageSpec::Migrate {
                artifact: migrate.artifact.to_string(),
                backup: migrate.backup,
            },
        };
        planned.push(PlannedDeploymentStage {
            name: stage.name.to_string(),
            title: stage.title.clone(),
            spec,
        });
    }
    Ok(planned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Definition {
        crate::definition::parse(include_str!("../../../examples/studybuddy/flightdeck.yml"))
            .expect("the sample parses")
    }

    fn names(env: &str) -> Vec<(String, &'static str)> {
        stages_for(&sample(), env)
            .unwrap()
            .into_iter()
            .map(|s| (s.name, s.spec.kind()))
            .collect()
    }

    #[test]
    fn each_environment_gets_its_deploy_stage_and_what_follows_it() {
        assert_eq!(
            names("development"),
            vec![("deploy-development".into(), "deploy")]
        );
        assert_eq!(
            names("staging"),
            vec![
                ("deploy-staging".into(), "deploy"),
                ("ui-tests".into(), "jobs"),
                ("manual-testing".into(), "manual"),
                ("qa-approval".into(), "gate"),
                ("user-acceptance".into(), "gate"),
                ("performance-tests".into(), "jobs"),
            ]
        );
        assert_eq!(
            names("production"),
            vec![
                ("deploy-production".into(), "deploy"),
                ("feature-flags".into(), "flags"),
                ("monitoring".into(), "check"),
                ("analytics".into(), "check"),
                ("cdn-assets".into(), "publish"),
                ("database-migration".into(), "migrate"),
            ]
        );
    }

    #[test]
    fn the_staging_checklist_and_gates_come_from_the_file() {
        let stages = stages_for(&sample(), "staging").unwrap();
        assert_eq!(
            stages[2].spec,
            StageSpec::Manual {
                checklist: Some("docs/manual-tests.md".into())
            }
        );
        assert!(matches!(
            stages[3].spec,
            StageSpec::Gate {
                role: crate::role::Role::Qa,
                approvals: 1,
                ..
            }
        ));
        let StageSpec::Deploy {
            publish,
            migrate,
            job,
        } = &stages[0].spec
        else {
            panic!("deploy first");
        };
        assert_eq!(publish, &["web", "assets"]);
        assert_eq!(migrate.as_deref(), Some("db-schema"));
        assert_eq!(job.as_ref().unwrap().jobs.len(), 1);
    }

    #[test]
    fn an_environment_without_a_deploy_stage_is_refused() {
        assert!(matches!(
            stages_for(&sample(), "qa"),
            Err(DeploymentError::NoDeployStage(_))
        ));
    }
}
