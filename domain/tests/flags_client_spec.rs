//! The flag evaluator against Unleash's client specification: every file of the
//! `@unleash/client-specification` suite, installed by `npm ci` in `end2end/`, both its
//! `tests` (is the flag on?) and its `variantTests` (which variant?).
#![cfg(feature = "server")]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use chrono::{DateTime, Utc};
use domain::flags::{ClientFeatures, ClientFeaturesDelta, Context, FeatureSet, VariantResult};
use serde::Deserialize;

const SUITE_VERSION: &str = "6.1.0";
/// Enabled checks plus variant checks in version 6.1.0 of the suite.
const SUITE_CHECKS: usize = 279;

fn suite_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../end2end/node_modules/@unleash/client-specification");
    assert!(
        dir.join("specifications").is_dir(),
        "the Unleash client specification is not installed at {}: run `npm ci` in end2end/ first",
        dir.display()
    );
    dir
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SpecFile {
    name: String,
    state: State,
    #[serde(default)]
    tests: Vec<EnabledCase>,
    #[serde(default)]
    variant_tests: Vec<VariantCase>,
}

/// Files 19 and 20 hold delta events instead of a features payload.
#[derive(Deserialize)]
#[serde(untagged)]
enum State {
    Features(ClientFeatures),
    Delta(ClientFeaturesDelta),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EnabledCase {
    description: String,
    context: SpecContext,
    toggle_name: String,
    expected_result: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct VariantCase {
    description: String,
    context: SpecContext,
    toggle_name: String,
    expected_result: VariantResult<'static>,
}

/// The suite's context: like ours, but `currentTime` is text and properties may be `null`.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct SpecContext {
    user_id: Option<String>,
    session_id: Option<String>,
    remote_address: Option<String>,
    environment: Option<String>,
    app_name: Option<String>,
    current_time: Option<String>,
    #[serde(default)]
    properties: BTreeMap<String, Option<String>>,
}

impl SpecContext {
    fn into_context(self) -> Context {
        Context {
            user_id: self.user_id,
            session_id: self.session_id,
            remote_address: self.remote_address,
            environment: self.environment,
            app_name: self.app_name,
            current_time: self.current_time.map(|t| {
                t.parse::<DateTime<Utc>>()
                    .unwrap_or_else(|e| panic!("currentTime {t:?}: {e}"))
            }),
            properties: self
                .properties
                .into_iter()
                .filter_map(|(name, value)| value.map(|v| (name, v)))
                .collect(),
        }
    }
}

fn load(file: &str) -> SpecFile {
    let path = suite_dir().join("specifications").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn feature_set(state: State) -> FeatureSet {
    let payload = match state {
        State::Features(payload) => payload,
        State::Delta(delta) => ClientFeatures::from_delta(delta),
    };
    FeatureSet::from_client_features(payload)
}

#[test]
fn every_case_of_the_unleash_client_specification_passes() {
    let dir = suite_dir();
    let package: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("package.json")).expect("package.json"),
    )
    .expect("package.json is JSON");
    assert_eq!(
        package["version"], SUITE_VERSION,
        "end2end/package.json pins the suite version"
    );
    let index: Vec<String> = serde_json::from_str(
        &std::fs::read_to_string(dir.join("specifications/index.json")).expect("index.json"),
    )
    .expect("index.json lists the files");

    let (mut checks, mut failures) = (0, Vec::new());
    for file in &index {
        let spec = load(file);
        let flags = feature_set(spec.state);
        for case in spec.tests {
            checks += 1;
            let actual = flags.is_enabled(&case.toggle_name, &case.context.into_context());
            if actual != case.expected_result {
                failures.push(format!(
                    "{} / {}: {}: expected {}, got {actual}",
                    spec.name, case.toggle_name, case.description, case.expected_result
                ));
            }
        }
        for case in spec.variant_tests {
            checks += 1;
            let actual = flags.get_variant(&case.toggle_name, &case.context.into_context());
            if actual != case.expected_result {
                failures.push(format!(
                    "{} / {}: {}: expected {:?}, got {actual:?}",
                    spec.name, case.toggle_name, case.description, case.expected_result
                ));
            }
        }
    }
    println!(
        "client-specification {SUITE_VERSION}: {} of {checks} checks passed in {} files, none skipped",
        checks - failures.len(),
        index.len()
    );
    assert!(
        failures.is_empty(),
        "{} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(
        checks, SUITE_CHECKS,
        "the suite should hold {SUITE_CHECKS} checks"
    );
}

#[test]
fn is_enabled_and_get_variant_agree_on_every_variant_case() {
    for file in [
        "08-variants.json",
        "16-strategy-variants.json",
        "17-dependent-features.json",
    ] {
        let spec = load(file);
        let flags = feature_set(spec.state);
        for case in spec.variant_tests {
            let context = case.context.into_context();
            let evaluation = flags.evaluate(&case.toggle_name, &context);
            let enabled = evaluation.as_ref().is_some_and(|e| e.enabled);
            assert_eq!(
                enabled,
                flags.is_enabled(&case.toggle_name, &context),
                "{}",
                case.description
            );
            assert_eq!(
                enabled, case.expected_result.feature_enabled,
                "{}",
                case.description
            );
        }
    }
}

#[test]
fn the_suite_definitions_raise_only_the_problems_they_are_meant_to() {
    let mut problems: Vec<String> = Vec::new();
    for file in [
        "13-constraint-operators.json",
        "15-global-constraints.json",
        "21-regex-constraint-operators.json",
    ] {
        let flags = feature_set(load(file).state);
        problems.extend(flags.warnings().iter().map(|w| w.flag.clone()));
    }
    problems.sort();
    assert_eq!(
        problems,
        [
            "F7.invalid-operator",
            "F9.withMissingSegment",
            "R90.reject_lookahead",
            "R91.reject_backreference",
            "invalid-regex-defaults-to-false",
        ]
    );
}

/// A timing, not a check: run with `cargo test --release -- --ignored --nocapture`.
#[test]
#[ignore = "a micro-benchmark; run it by hand in release mode"]
fn evaluating_a_simple_flag_takes_well_under_a_microsecond() {
    let context = Context {
        user_id: Some("2".into()),
        environment: Some("prod".into()),
        ..Context::default()
    };
    let rounds = 1_000_000;
    for (file, flag) in [
        ("01-simple-examples.json", "Feature.A"),
        (
            "10-flexible-rollout-strategy.json",
            "Feature.flexibleRollout.10",
        ),
        ("09-strategy-constraints.json", "Feature.constraints.multi"),
        ("08-variants.json", "Feature.Variants.D"),
    ] {
        let flags = feature_set(load(file).state);
        let started = Instant::now();
        let mut on = 0usize;
        for _ in 0..rounds {
            let evaluation = std::hint::black_box(&flags).evaluate(flag, &context);
            on += usize::from(evaluation.is_some_and(|e| e.enabled));
        }
        let per_call = started.elapsed().as_nanos() / rounds;
        println!("{flag}: {per_call} ns per evaluate (on {on} of {rounds})");
    }
}
