//! The pipeline definition parser, on the StudyBuddy sample and on one bad file per kind of
//! mistake (`tests/definitions/`).
#![cfg(feature = "server")]

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Europe::Berlin;
use domain::artifact::ArtifactKind;
use domain::definition::{
    DatabaseTarget, Definition, Diagnostic, ScheduleAction, StageKind, parse, render,
};
use domain::role::Role;

const SAMPLE: &str = include_str!("../../examples/studybuddy/flightdeck.yml");

fn sample() -> Definition {
    match parse(SAMPLE) {
        Ok(definition) => definition,
        Err(diagnostics) => panic!("{}", render(&diagnostics, "flightdeck.yml", SAMPLE)),
    }
}

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/definitions")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn diagnostics(name: &str) -> Vec<Diagnostic> {
    match parse(&fixture(name)) {
        Ok(_) => panic!("{name} parsed, but it has a mistake"),
        Err(diagnostics) => diagnostics,
    }
}

/// The one diagnostic a fixture gives.
fn only_diagnostic(name: &str) -> Diagnostic {
    let mut all = diagnostics(name);
    assert_eq!(all.len(), 1, "{name}: {all:#?}");
    all.remove(0)
}

fn utc(text: &str) -> DateTime<Utc> {
    text.parse().expect("a UTC time")
}

fn stage_names(definition: &Definition, phase: usize) -> Vec<&str> {
    definition.phases()[phase]
        .stages
        .iter()
        .map(|s| s.name.as_str())
        .collect()
}

#[test]
fn the_studybuddy_sample_parses() {
    let definition = sample();
    assert_eq!(definition.project().key.as_str(), "studybuddy");
    assert_eq!(definition.triggers().push_branches, ["main"]);
}

#[test]
fn phases_and_stages_come_in_file_order_with_their_kinds() {
    let definition = sample();
    let phases: Vec<&str> = definition
        .phases()
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(phases, ["development", "ci-cd", "staging", "production"]);
    assert_eq!(definition.phases()[1].title, "CI/CD");
    assert_eq!(
        stage_names(&definition, 0),
        ["feature-development", "local-testing", "git-push"]
    );
    assert_eq!(
        stage_names(&definition, 1),
        [
            "code-quality",
            "unit-tests",
            "security-scan",
            "build",
            "integration-tests",
            "deploy-development"
        ]
    );
    assert_eq!(
        stage_names(&definition, 2),
        [
            "deploy-staging",
            "ui-tests",
            "manual-testing",
            "qa-approval",
            "user-acceptance",
            "performance-tests"
        ]
    );
    let production: Vec<(&str, &str)> = definition.phases()[3]
        .stages
        .iter()
        .map(|s| (s.name.as_str(), s.kind.as_str()))
        .collect();
    assert_eq!(
        production,
        [
            ("deploy-production", "deploy"),
            ("feature-flags", "flags"),
            ("monitoring", "check"),
            ("analytics", "check"),
            ("cdn-assets", "publish"),
            ("database-migration", "migrate"),
        ]
    );
}

#[test]
fn stages_without_needs_follow_the_previous_stage_and_skip_manual_ones() {
    let definition = sample();
    let needs = |stage: &str| -> Vec<String> {
        let stage = definition.stage(stage).expect("a stage of the sample");
        stage.needs.iter().map(|n| n.to_string()).collect()
    };
    assert!(needs("code-quality").is_empty());
    assert_eq!(needs("unit-tests"), ["code-quality"]);
    assert_eq!(needs("security-scan"), ["code-quality"]);
    assert_eq!(needs("build"), ["unit-tests", "security-scan"]);
    assert_eq!(needs("qa-approval"), ["ui-tests"]);
    assert_eq!(needs("deploy-production"), ["performance-tests"]);
    assert!(needs("local-testing").is_empty());
    assert!(
        !definition
            .stage("manual-testing")
            .expect("stage")
            .is_executed()
    );
}

#[test]
fn gates_deploys_and_manual_stages_are_typed() {
    let definition = sample();
    let kind = |stage: &str| &definition.stage(stage).expect("stage").kind;
    match kind("qa-approval") {
        StageKind::Gate(gate) => assert_eq!((gate.role, gate.approvals), (Role::Qa, 1)),
        other => panic!("qa-approval is {other:?}"),
    }
    match kind("user-acceptance") {
        StageKind::Gate(gate) => assert_eq!(gate.role, Role::Product),
        other => panic!("user-acceptance is {other:?}"),
    }
    match kind("deploy-staging") {
        StageKind::Deploy(deploy) => {
            assert_eq!(deploy.environment.as_str(), "staging");
            let published: Vec<&str> = deploy.publish.iter().map(|a| a.as_str()).collect();
            assert_eq!(published, ["web", "assets"]);
            assert_eq!(
                deploy.migrate.as_ref().map(|a| a.as_str()),
                Some("db-schema")
            );
            let job = deploy.job.as_ref().expect("a deploy job");
            assert_eq!(job.name.as_str(), "deploy-staging");
            assert_eq!(job.timeout, Duration::from_secs(600));
        }
        other => panic!("deploy-staging is {other:?}"),
    }
    match kind("local-testing") {
        StageKind::Manual(manual) => {
            assert_eq!(manual.hook.map(|h| h.as_str()), Some("pre-push"));
            assert_eq!(manual.steps.len(), 2);
        }
        other => panic!("local-testing is {other:?}"),
    }
    match kind("feature-flags") {
        StageKind::Flags(flags) => {
            assert_eq!(flags.set[0].flag, "smart-reminders");
            assert_eq!(flags.set[0].rollout, Some(10));
        }
        other => panic!("feature-flags is {other:?}"),
    }
    match kind("monitoring") {
        StageKind::Check(check) => {
            assert_eq!(check.window, Duration::from_secs(30 * 60));
            assert_eq!(check.fail_on.crash_free_sessions_below, Some(99.0));
            assert_eq!(
                check.fail_on.p95_latency_above,
                Some(Duration::from_secs(1))
            );
        }
        other => panic!("monitoring is {other:?}"),
    }
    assert_eq!(
        definition
            .deploy_stage("production")
            .map(|s| s.name.as_str()),
        Some("deploy-production")
    );
}

#[test]
fn each_phase_lists_the_artifacts_its_jobs_declare() {
    let definition = sample();
    let ci: Vec<(&str, ArtifactKind)> = definition.phases()[1]
        .artifacts()
        .map(|a| (a.name.as_str(), a.kind))
        .collect();
    assert_eq!(
        ci,
        [
            ("unit-test-report", ArtifactKind::Report),
            ("web", ArtifactKind::Web),
            ("assets", ArtifactKind::AssetBundle),
            ("db-schema", ArtifactKind::DbSchema),
            ("api-spec", ArtifactKind::ApiSpec),
            ("android-apk", ArtifactKind::Apk),
            ("ios-ipa", ArtifactKind::Ipa),
            ("integration-test-report", ArtifactKind::Report),
        ]
    );
    assert_eq!(definition.phases()[0].artifacts().count(), 0);
}

#[test]
fn jobs_carry_their_runner_labels_limits_and_secrets() {
    let definition = sample();
    let build = definition.stage("build").expect("stage");
    let apk = build
        .jobs()
        .iter()
        .find(|j| j.name.as_str() == "apk")
        .expect("apk job");
    assert_eq!(apk.runs_on, ["android"]);
    assert!(apk.optional);
    assert!(!apk.allow_failure);
    assert_eq!(apk.timeout, Duration::from_secs(30 * 60));
    assert_eq!(
        apk.needs.iter().map(|n| n.as_str()).collect::<Vec<_>>(),
        ["web"]
    );
    assert_eq!(apk.secrets, ["ANDROID_KEYSTORE_PASSWORD"]);
    let integration = &definition.stage("integration-tests").expect("stage").jobs()[0];
    assert_eq!(integration.retries, 1);
    assert_eq!(
        integration.env.get("NODE_ENV").map(String::as_str),
        Some("test")
    );
    assert_eq!(
        integration.steps[1].label(),
        "Migrate a fresh database and run the integration tests"
    );
    assert_eq!(integration.steps[0].label(), "npm ci");
}

#[test]
fn environments_and_schedules_come_in_file_order() {
    let definition = sample();
    let environments: Vec<&str> = definition
        .environments()
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(environments, ["development", "staging", "production"]);
    let production = definition.environment("production").expect("production");
    assert_eq!(production.protection.required_approvals, 1);
    assert_eq!(production.protection.allowed_roles, [Role::ReleaseManager]);
    assert_eq!(
        production.database,
        Some(DatabaseTarget::Name("studybuddy_production".to_string()))
    );
    let window = production.deploy_window.as_ref().expect("a deploy window");
    assert_eq!(window.opens.as_str(), "0 2 * * SUN");
    assert_eq!(window.duration, Duration::from_secs(4 * 3600));
    assert_eq!(window.timezone, Berlin);

    let schedules: Vec<(&str, &str)> = definition
        .schedules()
        .iter()
        .map(|s| (s.name.as_str(), s.cron.as_str()))
        .collect();
    assert_eq!(
        schedules,
        [
            ("development", "*/30 8-18 * * MON-FRI"),
            ("staging", "0 18 * * *"),
            ("production", "0 2 * * SUN"),
            ("nightly", "0 3 * * *"),
        ]
    );
    assert!(matches!(
        &definition.schedules()[2].action,
        ScheduleAction::Promote { environment } if environment.as_str() == "production"
    ));
    assert_eq!(
        definition.schedules()[3].action,
        ScheduleAction::Run {
            branch: "main".to_string()
        }
    );
}

#[test]
fn the_rollback_policy_is_automatic_on_critical_errors_and_manual_for_release_managers() {
    let rollback = sample().rollback().clone();
    let automatic = rollback.automatic.expect("automatic rollback");
    assert_eq!(automatic.on.crash_free_sessions_below, Some(99.0));
    assert_eq!(automatic.on.error_rate_above, Some(5.0));
    assert_eq!(automatic.on.min_sessions, Some(50));
    assert_eq!(automatic.window, Duration::from_secs(3600));
    assert_eq!(
        automatic
            .environments
            .iter()
            .map(|e| e.as_str())
            .collect::<Vec<_>>(),
        ["production"]
    );
    assert_eq!(rollback.manual_roles, [Role::ReleaseManager]);
    assert!(rollback.restore_database && rollback.restore_flags);
}

#[test]
fn a_minimal_definition_gets_the_documented_defaults() {
    let definition = parse(&fixture("minimal.yml")).expect("minimal.yml parses");
    assert_eq!(definition.triggers().push_branches, ["main"]);
    assert!(definition.environments().is_empty());
    assert!(definition.schedules().is_empty());
    assert!(definition.rollback().automatic.is_none());
    let stage = definition.stage("test").expect("stage");
    assert_eq!(stage.title, "Test");
    assert!(stage.needs.is_empty());
    let job = &stage.jobs()[0];
    assert_eq!(
        (job.timeout, job.retries),
        (Duration::from_secs(30 * 60), 0)
    );
    assert!(job.runs_on.is_empty());
}

#[test]
fn an_unknown_key_is_reported_with_the_keys_allowed_there() {
    assert_eq!(
        only_diagnostic("unknown-key.yml"),
        Diagnostic::new(
            11,
            13,
            "unknown key `retrys`; did you mean `retries`? The keys allowed here are steps, \
             needs, runs_on, artifacts, timeout, retries, allow_failure, optional, env, secrets"
        )
    );
}

#[test]
fn a_yaml_syntax_error_is_reported_where_the_parser_stopped() {
    assert_eq!(
        only_diagnostic("syntax-error.yml"),
        Diagnostic::new(11, 20, "invalid YAML: illegal placement of ':' indicator")
    );
}

#[test]
fn a_cycle_in_stage_needs_is_named_stage_by_stage() {
    assert_eq!(
        only_diagnostic("cycle.yml"),
        Diagnostic::new(
            8,
            17,
            "stages need each other in a cycle, so none of them can start: `build` → \
             `package` → `test` → `build` (a stage without `needs` needs the stage before it)"
        )
    );
}

#[test]
fn a_need_on_an_unknown_stage_suggests_the_closest_name() {
    assert_eq!(
        only_diagnostic("unknown-need.yml"),
        Diagnostic::new(
            13,
            17,
            "stage `deploy-prod` needs `qa-aproval`, which is not a stage in this pipeline; \
             did you mean `qa-approval`?"
        )
    );
}

#[test]
fn a_deploy_to_an_undeclared_environment_is_refused() {
    assert_eq!(
        only_diagnostic("unknown-environment.yml"),
        Diagnostic::new(
            12,
            24,
            "stage `deploy-prod` names the environment `prod`, which is not declared under \
             `environments` (declared: staging, production); did you mean `production`?"
        )
    );
}

#[test]
fn an_unknown_role_is_refused_with_the_list_of_roles() {
    assert_eq!(
        only_diagnostic("unknown-role.yml"),
        Diagnostic::new(
            9,
            17,
            "unknown role `tester`; the roles are viewer, developer, qa, product, \
             release-manager, admin"
        )
    );
}

#[test]
fn a_cron_expression_with_four_fields_is_refused() {
    assert_eq!(
        only_diagnostic("bad-cron.yml"),
        Diagnostic::new(
            13,
            11,
            "`0 2 * *` is not a valid cron expression: it has 4 fields, but a cron expression \
             has 5 (minute, hour, day of month, month and day of week), like `0 18 * * *`"
        )
    );
}

#[test]
fn a_misspelt_time_zone_suggests_the_iana_name() {
    assert_eq!(
        only_diagnostic("bad-timezone.yml"),
        Diagnostic::new(
            14,
            15,
            "`Europe/Berln` is not an IANA time zone name, such as `Europe/Berlin` or `UTC`; \
             did you mean `Europe/Berlin`?"
        )
    );
}

#[test]
fn a_stage_name_used_in_two_phases_is_refused() {
    assert_eq!(
        only_diagnostic("duplicate-stage.yml"),
        Diagnostic::new(
            13,
            7,
            "there is already a stage named `test` (in phase `ci`, line 7); stage names must \
             be unique across the pipeline"
        )
    );
}

#[test]
fn a_duplicate_yaml_key_is_refused() {
    assert_eq!(
        only_diagnostic("duplicate-key.yml"),
        Diagnostic::new(
            11,
            11,
            "the key `web` appears twice in this map; each key may appear only once"
        )
    );
}

#[test]
fn a_duration_without_a_unit_is_refused() {
    assert_eq!(
        only_diagnostic("bad-duration.yml"),
        Diagnostic::new(
            11,
            22,
            "`10 minutes` is not a duration; write numbers with units (d, h, m, s) from largest \
             to smallest, like `45s`, `10m` or `1h30m`"
        )
    );
}

#[test]
fn more_than_five_retries_are_out_of_range() {
    assert_eq!(
        only_diagnostic("retries-out-of-range.yml"),
        Diagnostic::new(
            11,
            22,
            "retries must be a whole number from 0 to 5, not `7`"
        )
    );
}

#[test]
fn every_problem_in_well_formed_yaml_is_reported_at_once_in_file_order() {
    let found: Vec<(usize, usize)> = diagnostics("many-errors.yml")
        .iter()
        .map(|d| (d.line, d.column))
        .collect();
    assert_eq!(
        found,
        [
            (4, 8),
            (9, 27),
            (13, 7),
            (16, 20),
            (18, 21),
            (25, 23),
            (26, 23),
            (30, 22),
            (31, 7),
            (39, 11),
            (40, 15),
            (42, 18),
        ]
    );
    let messages: Vec<String> = diagnostics("many-errors.yml")
        .into_iter()
        .map(|d| d.message)
        .collect();
    let expected = [
        "`Messy_App` is not a valid project key",
        "unknown role `root`",
        "`Build_App` is not a valid stage name: use lower-case letters, digits and single \
         hyphens, starting with a letter and not ending with a hyphen, like `build-app`",
        "job `web` in stage `Build_App` has no steps",
        "jobs in stage `Build_App` need each other in a cycle, so none of them can start: \
         `lint` → `tests` → `lint`",
        "`../outside.xml` is not a usable artifact path",
        "`junit` is not an artifact kind",
        "approvals must be a whole number from 1 to 10, not `0`",
        "stage `deploy` has `deploy` and `check`; a stage does one thing",
        "`61 2 * * *` is not a valid cron expression",
        "`Mars/Olympus` is not an IANA time zone name",
        "schedule `nightly` names the environment `production`, which is not declared",
    ];
    for (message, part) in messages.iter().zip(expected) {
        assert!(
            message.contains(part),
            "{message:?} should contain {part:?}"
        );
    }
}

#[test]
fn diagnostics_render_like_a_compiler() {
    let source = fixture("unknown-need.yml");
    let diagnostics = parse(&source).expect_err("unknown-need.yml has a mistake");
    assert_eq!(
        render(&diagnostics, "flightdeck.yml", &source),
        "flightdeck.yml:13:17: error: stage `deploy-prod` needs `qa-aproval`, which is not a \
         stage in this pipeline; did you mean `qa-approval`?\n   |\n13 |         needs: \
         [qa-aproval]\n   |                 ^\n"
    );
    assert_eq!(
        Diagnostic::new(12, 5, "bad").to_string(),
        "12:5: error: bad",
        "a diagnostic shows as line:column: error: message"
    );
}

#[test]
fn a_schedule_in_the_spring_gap_fires_right_after_it() {
    // Europe/Berlin skips 02:00-03:00 on the last Sunday of March 2025 (30 March).
    let definition = sample();
    let production = &definition.schedules()[2];
    let times = production.next_fire_times(utc("2025-03-28T12:00:00Z"), 2);
    assert_eq!(
        times,
        [
            Berlin.with_ymd_and_hms(2025, 3, 30, 3, 0, 0).unwrap(),
            Berlin.with_ymd_and_hms(2025, 4, 6, 2, 0, 0).unwrap(),
        ]
    );
    assert_eq!(times[0].with_timezone(&Utc), utc("2025-03-30T01:00:00Z"));
    assert_eq!(times[1].with_timezone(&Utc), utc("2025-04-06T00:00:00Z"));
}

#[test]
fn a_schedule_in_the_repeated_autumn_hour_fires_once() {
    // On 26 October 2025, 02:00-03:00 happens twice in Europe/Berlin (CEST, then CET).
    let definition = sample();
    let production = &definition.schedules()[2];
    let times = production.next_fire_times(utc("2025-10-20T00:00:00Z"), 2);
    let in_utc: Vec<DateTime<Utc>> = times.iter().map(|t| t.with_timezone(&Utc)).collect();
    assert_eq!(
        in_utc,
        [utc("2025-10-26T00:00:00Z"), utc("2025-11-02T01:00:00Z")]
    );
}

#[test]
fn a_daily_schedule_keeps_its_local_time_across_the_change() {
    let definition = sample();
    let staging = &definition.schedules()[1];
    let times: Vec<String> = staging
        .next_fire_times(utc("2025-03-29T00:00:00Z"), 3)
        .iter()
        .map(|t| t.to_rfc3339())
        .collect();
    assert_eq!(
        times,
        [
            "2025-03-29T18:00:00+01:00",
            "2025-03-30T18:00:00+02:00",
            "2025-03-31T18:00:00+02:00",
        ]
    );
}

#[test]
fn the_production_window_is_open_for_four_hours_from_sunday_two_oclock() {
    let definition = sample();
    let window = definition
        .environment("production")
        .and_then(|e| e.deploy_window.clone())
        .expect("a deploy window");
    // 6 April 2025 is a Sunday in summer time: open 00:00Z to 04:00Z.
    assert!(window.is_open(utc("2025-04-06T00:00:00Z")));
    assert!(window.is_open(utc("2025-04-06T03:59:59Z")));
    assert!(!window.is_open(utc("2025-04-06T04:00:00Z")));
    assert!(!window.is_open(utc("2025-04-05T23:59:59Z")));
    // On the day the clocks change it opens at 03:00 local, 01:00Z, and still lasts four hours.
    assert!(!window.is_open(utc("2025-03-30T00:30:00Z")));
    assert!(window.is_open(utc("2025-03-30T04:30:00Z")));
    assert_eq!(
        window.next_opening(utc("2025-04-07T00:00:00Z")),
        Some(Berlin.with_ymd_and_hms(2025, 4, 13, 2, 0, 0).unwrap())
    );
}

#[test]
fn pushes_start_runs_only_on_the_listed_branches() {
    let triggers = sample().triggers().clone();
    assert!(triggers.push_starts_run("main"));
    assert!(!triggers.push_starts_run("feature/reminders"));
    let source = fixture("minimal.yml").replace(
        "phases:",
        "triggers:\n  push:\n    branches: [main, release/*]\nphases:",
    );
    let triggers = parse(&source).expect("parses").triggers().clone();
    assert!(triggers.push_starts_run("release/1.4"));
    assert!(!triggers.push_starts_run("releases"));
}
