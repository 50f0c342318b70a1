//! Our flag evaluator against Unleash's own engine, yggdrasil (crate `unleash-yggdrasil`, the
//! core of Unleash Edge and of the current SDKs), on generated flag sets and contexts.
//!
//! Each generated flag set is serialized once, as our snapshots serve it, and both evaluators
//! read that JSON: ours through `FeatureSet`, the engine through `take_state`. Every flag is then
//! evaluated for every generated context by both and the results compared: on or off, the
//! variant's name, whether it is enabled, its payload, and `feature_enabled`.
//!
//! Only what Unleash leaves to chance is left out (`left_to_chance`): a partial rollout sticky on
//! `random` (or `gradualRolloutRandom`), a partial rollout on default stickiness for a context
//! with neither userId nor sessionId, and a split between variants for a context without the
//! stickiness value. The engine reads `currentTime` as text; it is given the text ours compares
//! (RFC 3339 with milliseconds).
//!
//! The generator is checked too (`Coverage`): every operator, plain, inverted and
//! case-insensitive, every strategy kind, segments, every kind of dependency, and the ways a
//! variant is chosen must each have been seen deciding both ways.
#![cfg(feature = "server")]

mod generate;
mod pools;

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use domain::flags::model::{ClientFeature, ClientFeatures, Variant};
use domain::flags::{Context, FeatureSet};
use generate::Generator;
use pools::{OPERATORS, STRATEGIES};
use rand::SeedableRng;
use rand::rngs::StdRng;
use unleash_yggdrasil::{EngineState, UpdateMessage};

const SEED: u64 = 0x00f1_a65e_ed00;
const WORLDS: usize = 400;
const CONTEXTS_PER_WORLD: usize = 16;

/// A flag's result for one context, as both evaluators can state it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Outcome {
    enabled: bool,
    variant: String,
    variant_enabled: bool,
    feature_enabled: bool,
    payload: Option<(String, String)>,
}

struct Difference {
    world: ClientFeatures,
    flag: String,
    context: Context,
    ours: Outcome,
    engine: Outcome,
}

#[test]
fn our_evaluator_agrees_with_unleash_engine_on_generated_flags_and_contexts() {
    let started = Instant::now();
    let mut generator = Generator::new(StdRng::seed_from_u64(SEED), hostname());
    let mut coverage = Coverage::default();
    let (mut compared, mut left_out, mut cases) = (0usize, 0usize, 0usize);
    let mut differences: Vec<Difference> = Vec::new();
    for _ in 0..WORLDS {
        let world = generator.world();
        let json = serde_json::to_string(&world).unwrap();
        let ours = FeatureSet::from_client_features(serde_json::from_str(&json).unwrap());
        let engine = EngineState::default();
        let warnings = engine.take_state(UpdateMessage::FullResponse(
            serde_json::from_str(&json).expect("the engine reads our snapshot JSON"),
        ));
        assert!(
            warnings.is_none(),
            "the engine cannot use a generated definition: {warnings:?}\n{json}"
        );
        for _ in 0..CONTEXTS_PER_WORLD {
            cases += 1;
            let context = generator.context();
            let theirs = engine_context(&context);
            for flag in &world.features {
                if left_to_chance(&world, flag, &context) {
                    left_out += 1;
                    continue;
                }
                compared += 1;
                let mine = ours_for(&ours, &flag.name, &context);
                coverage.record(&world, flag, &context, &mine);
                let engine = engine_for(&engine, &flag.name, &theirs);
                if mine != engine {
                    differences.push(Difference {
                        world: world.clone(),
                        flag: flag.name.clone(),
                        context: context.clone(),
                        ours: mine,
                        engine,
                    });
                }
            }
        }
    }
    println!(
        "{cases} flag sets × contexts, {compared} evaluations compared, {left_out} left to \
         chance, {:?}",
        started.elapsed()
    );
    if let Some(first) = differences.first() {
        panic!(
            "{} of {compared} evaluations differ; the first:\n{}",
            differences.len(),
            describe(first)
        );
    }
    assert!(
        left_out * 4 < compared,
        "chance decides too many cases ({left_out} of {}) for the comparison to say much",
        compared + left_out
    );
    coverage.assert_complete();
}

fn ours_for(set: &FeatureSet, flag: &str, context: &Context) -> Outcome {
    let evaluation = set.evaluate(flag, context).expect("the flag is in the set");
    let variant = evaluation.variant;
    Outcome {
        enabled: evaluation.enabled,
        variant: variant.name.into_owned(),
        variant_enabled: variant.enabled,
        feature_enabled: variant.feature_enabled,
        payload: variant
            .payload
            .map(|p| (String::from(p.kind.clone()), p.value.clone())),
    }
}

fn engine_for(engine: &EngineState, flag: &str, context: &unleash_yggdrasil::Context) -> Outcome {
    let resolved = engine
        .resolve(flag, context, &None)
        .expect("the engine knows the flag");
    assert_eq!(
        engine.is_enabled(flag, context, &None),
        resolved.enabled,
        "the engine's is_enabled agrees with its resolve"
    );
    let variant = resolved.variant;
    Outcome {
        enabled: resolved.enabled,
        variant: variant.name,
        variant_enabled: variant.enabled,
        feature_enabled: variant.feature_enabled,
        payload: variant.payload.map(|p| (p.payload_type, p.value)),
    }
}

fn engine_context(context: &Context) -> unleash_yggdrasil::Context {
    unleash_yggdrasil::Context {
        user_id: context.user_id.clone(),
        session_id: context.session_id.clone(),
        environment: context.environment.clone(),
        app_name: context.app_name.clone(),
        current_time: context
            .current_time
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        remote_address: context.remote_address.clone(),
        properties: Some(
            context
                .properties
                .clone()
                .into_iter()
                .collect::<HashMap<_, _>>(),
        ),
    }
}

/// This machine's name, found as our evaluator finds it.
fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.trim().is_empty())
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|| "undefined".to_owned())
}

/// Whether the engine would draw at random for this flag or a parent it depends on.
fn left_to_chance(world: &ClientFeatures, flag: &ClientFeature, context: &Context) -> bool {
    let parents = flag
        .dependencies
        .iter()
        .filter_map(|d| world.features.iter().find(|f| f.name == d.feature));
    std::iter::once(flag)
        .chain(parents)
        .any(|f| draws(f, context))
}

fn draws(flag: &ClientFeature, context: &Context) -> bool {
    let partial = |p: Option<&String>| {
        p.and_then(|p| p.parse::<u32>().ok())
            .is_some_and(|p| (1..=99).contains(&p))
    };
    let no_id = context.user_id.is_none() && context.session_id.is_none();
    let rollout_draws = flag.strategies.iter().any(|s| match s.name.as_str() {
        "gradualRolloutRandom" => partial(s.parameters.get("percentage")),
        "flexibleRollout" => {
            partial(s.parameters.get("rollout"))
                && match s.parameters.get("stickiness").map(String::as_str) {
                    Some("random") => true,
                    None | Some("default") => no_id,
                    Some(_) => false,
                }
        }
        _ => false,
    });
    let first_stickiness = flag.variants.first().and_then(|v| v.stickiness.as_deref());
    rollout_draws
        || split_draws(&flag.variants, first_stickiness, context)
        || flag.strategies.iter().any(|s| {
            let stickiness = s.parameters.get("stickiness").map(String::as_str);
            split_draws(&s.variants, stickiness, context)
        })
}

/// A pick between two or more weighted variants without the value the engine hashes.
fn split_draws(variants: &[Variant], stickiness: Option<&str>, context: &Context) -> bool {
    let seed = match stickiness {
        None | Some("default") => context.user_id.as_ref().or(context.session_id.as_ref()),
        Some(field) => value(context, field),
    };
    seed.is_none() && variants.iter().filter(|v| v.weight > 0).count() > 1
}

/// A context field as the engine looks it up (`currentTime` is not one it hashes).
fn value<'a>(context: &'a Context, field: &str) -> Option<&'a String> {
    match field {
        "userId" => context.user_id.as_ref(),
        "sessionId" => context.session_id.as_ref(),
        "environment" => context.environment.as_ref(),
        "appName" => context.app_name.as_ref(),
        "remoteAddress" => context.remote_address.as_ref(),
        other => context.properties.get(other),
    }
}

fn describe(difference: &Difference) -> String {
    let world = &difference.world;
    let flag = world.features.iter().find(|f| f.name == difference.flag);
    let flag = flag.expect("the differing flag is in its set");
    let parents: Vec<&ClientFeature> = flag
        .dependencies
        .iter()
        .filter_map(|d| world.features.iter().find(|f| f.name == d.feature))
        .collect();
    let used: Vec<i32> = flag
        .strategies
        .iter()
        .flat_map(|s| s.segments.clone())
        .collect();
    let segments: Vec<_> = world
        .segments
        .iter()
        .filter(|s| used.contains(&s.id))
        .collect();
    format!(
        "flag {}:\n  ours:    {:?}\n  Unleash: {:?}\ncontext: {}\nflag: {}\nparents: {}\nsegments: {}",
        flag.name,
        difference.ours,
        difference.engine,
        serde_json::to_string(&difference.context).unwrap(),
        pretty(flag),
        pretty(&parents),
        pretty(&segments),
    )
}

fn pretty<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).unwrap()
}

/// Which branches the compared cases went through, and which way.
#[derive(Default)]
struct Coverage {
    /// Per branch: how often the flag came out off, and on.
    outcomes: BTreeMap<String, [usize; 2]>,
    /// Ways a variant was chosen, and how often.
    variants: BTreeMap<&'static str, usize>,
}

impl Coverage {
    fn record(
        &mut self,
        world: &ClientFeatures,
        flag: &ClientFeature,
        context: &Context,
        outcome: &Outcome,
    ) {
        for label in branches(world, flag) {
            self.outcomes.entry(label).or_default()[usize::from(outcome.enabled)] += 1;
        }
        if !outcome.enabled {
            return;
        }
        let named = |variants: &[Variant]| variants.iter().any(|v| v.name == outcome.variant);
        let strategy_variant = flag.strategies.iter().any(|s| named(&s.variants));
        let way = if !outcome.variant_enabled {
            "no variant"
        } else if pinned(flag, context) == Some(outcome.variant.as_str()) {
            "an override"
        } else if strategy_variant {
            "a strategy's variants"
        } else {
            "the flag's variants"
        };
        *self.variants.entry(way).or_default() += 1;
    }

    fn assert_complete(&self) {
        let mut missing = Vec::new();
        let mut expect = |label: String, off: bool, on: bool| {
            let [seen_off, seen_on] = self.outcomes.get(&label).copied().unwrap_or_default();
            if (off && seen_off == 0) || (on && seen_on == 0) {
                missing.push(format!("{label} (off {seen_off}, on {seen_on})"));
            }
        };
        for operator in OPERATORS {
            expect(format!("operator {operator}"), true, true);
            expect(format!("operator {operator} inverted"), true, true);
            if operator.starts_with("STR") || operator == "REGEX" {
                expect(format!("operator {operator} case-insensitive"), true, true);
            }
        }
        for strategy in STRATEGIES {
            let (off, on) = match strategy {
                "default" => (false, true),
                "myCustomStrategy" => (true, false),
                _ => (true, true),
            };
            expect(format!("strategy {strategy}"), off, on);
        }
        expect("segment".into(), true, true);
        for kind in [
            "parent on",
            "parent off",
            "parent variant",
            "parent any variant",
        ] {
            expect(format!("dependency {kind}"), true, true);
        }
        expect("dependency missing parent".into(), true, false);
        expect("dependency nested parent".into(), true, false);
        for way in [
            "no variant",
            "an override",
            "a strategy's variants",
            "the flag's variants",
        ] {
            if !self.variants.contains_key(way) {
                missing.push(format!("a variant chosen by {way}"));
            }
        }
        assert!(
            missing.is_empty(),
            "the generator never reached: {missing:#?}"
        );
    }
}

/// The branches a probe flag's outcome can be put down to; none for other flags.
fn branches(world: &ClientFeatures, flag: &ClientFeature) -> Vec<String> {
    if !flag.enabled {
        return Vec::new();
    }
    match (flag.strategies.as_slice(), flag.dependencies.as_slice()) {
        ([strategy], []) if strategy.segments.is_empty() => match strategy.constraints.as_slice() {
            [] => vec![format!("strategy {}", strategy.name)],
            [c] if strategy.name == "default" => {
                let operator = c.operator.as_str();
                let mut label = format!("operator {operator}");
                if c.inverted {
                    label.push_str(" inverted");
                }
                let mut labels = vec![label];
                if c.case_insensitive && (operator.starts_with("STR") || operator == "REGEX") {
                    labels.push(format!("operator {operator} case-insensitive"));
                }
                labels
            }
            _ => Vec::new(),
        },
        ([strategy], []) if strategy.name == "default" && strategy.constraints.is_empty() => {
            vec!["segment".into()]
        }
        ([], [dependency]) => {
            let parent = world.features.iter().find(|f| f.name == dependency.feature);
            let kind = match (parent, dependency.enabled, &dependency.variants) {
                (None, ..) => "missing parent",
                (Some(p), ..) if !p.dependencies.is_empty() => "nested parent",
                (_, Some(false), _) => "parent off",
                (_, _, Some(v)) if v.is_empty() => "parent any variant",
                (_, _, Some(_)) => "parent variant",
                _ => "parent on",
            };
            vec![format!("dependency {kind}")]
        }
        _ => Vec::new(),
    }
}

/// The flag variant an override pins this context to, if any.
fn pinned<'a>(flag: &'a ClientFeature, context: &Context) -> Option<&'a str> {
    let matches = |field: &str, values: &[String]| {
        let found = match field {
            "currentTime" => None,
            field => value(context, field),
        };
        found.is_some_and(|v| values.contains(v))
    };
    flag.variants
        .iter()
        .find(|v| {
            v.overrides
                .iter()
                .any(|o| matches(&o.context_name, &o.values))
        })
        .map(|v| v.name.as_str())
}
