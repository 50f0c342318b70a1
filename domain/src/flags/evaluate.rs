//! Evaluating flags: on or off, which variant, and why.
//!
//! A flag is on when it is enabled, every parent it depends on is in the required state, and it
//! has no strategies or one of them matches. The first matching strategy's variants, if it has
//! any, replace the flag's own.

use serde::{Deserialize, Serialize};

use super::context::Context;
use super::hash::GroupKey;
use super::set::{FeatureSet, Flag, FlagInfo};
use super::strategy::Strategy;
use super::variant::VariantResult;

/// A flag's value for one context.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Evaluation<'a> {
    pub enabled: bool,
    pub variant: VariantResult<'a>,
    pub reason: Reason,
}

/// Why a flag has its value, in OFREP's words (`reason` in an evaluation response).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Reason {
    /// The flag is switched off, or a parent flag it depends on is not in the required state.
    Disabled,
    /// A hash or a random draw decided: a partial rollout, or a pick among weighted variants.
    Split,
    /// The context decided: a constraint or segment, a user or address list, a missing
    /// stickiness field, or a variant override.
    TargetingMatch,
    /// Nothing in the context mattered: on for everyone, a 0 % or 100 % rollout, one variant.
    Static,
    /// Only custom strategies, which Flightdeck cannot run, were there to decide (so: off).
    Unknown,
}

impl Reason {
    /// The OFREP name: `DISABLED`, `SPLIT`, `TARGETING_MATCH`, `STATIC` or `UNKNOWN`.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Disabled => "DISABLED",
            Reason::Split => "SPLIT",
            Reason::TargetingMatch => "TARGETING_MATCH",
            Reason::Static => "STATIC",
            Reason::Unknown => "UNKNOWN",
        }
    }

    /// Of two things that both shaped a result, the one to report: a split outranks targeting,
    /// which outranks an unknown strategy, which outranks nothing at all.
    pub(super) fn strongest(self, other: Reason) -> Reason {
        if other.rank() > self.rank() {
            other
        } else {
            self
        }
    }

    fn rank(self) -> u8 {
        match self {
            Reason::Static => 0,
            Reason::Unknown => 1,
            Reason::TargetingMatch => 2,
            Reason::Split => 3,
            Reason::Disabled => 4,
        }
    }
}

/// Whether a flag is on, and the strategy that turned it on.
enum Activation<'a> {
    /// Off, for this reason.
    Off(Reason),
    /// On; `strategy` is `None` for a flag without strategies.
    On {
        strategy: Option<&'a Strategy>,
        reason: Reason,
    },
}

impl FeatureSet {
    /// The flag's value for this context; `None` for a flag the set does not have.
    pub fn evaluate(&self, name: &str, context: &Context) -> Option<Evaluation<'_>> {
        self.position(name)
            .map(|position| self.evaluate_at(position, context))
    }

    /// Whether the flag is on; false for an unknown flag. Cheaper than `evaluate`: no variant.
    pub fn is_enabled(&self, name: &str, context: &Context) -> bool {
        self.position(name)
            .is_some_and(|position| self.is_on(position, context, &self.flags[position].group))
    }

    /// The flag's variant; the `disabled` placeholder for an unknown flag.
    pub fn get_variant(&self, name: &str, context: &Context) -> VariantResult<'_> {
        self.evaluate(name, context).map_or_else(
            || VariantResult::disabled(false),
            |evaluation| evaluation.variant,
        )
    }

    /// Every flag's value, in payload order.
    pub fn evaluate_all<'a>(
        &'a self,
        context: &'a Context,
    ) -> impl Iterator<Item = (&'a FlagInfo, Evaluation<'a>)> {
        self.flags
            .iter()
            .enumerate()
            .map(move |(position, flag)| (&flag.info, self.evaluate_at(position, context)))
    }

    fn evaluate_at(&self, position: usize, context: &Context) -> Evaluation<'_> {
        self.evaluate_as(position, context, &self.flags[position].group)
    }

    /// The flag's value when `asked` is the group of the flag being asked about: its own, or
    /// its child's when it is checked as a parent (see `Rule::Rollout`).
    fn evaluate_as(&self, position: usize, context: &Context, asked: &GroupKey) -> Evaluation<'_> {
        let flag = &self.flags[position];
        match self.activation(flag, context, asked) {
            Activation::Off(reason) => Evaluation {
                enabled: false,
                variant: VariantResult::disabled(false),
                reason,
            },
            Activation::On { strategy, reason } => {
                let variants = strategy
                    .map(|s| &s.variants)
                    .filter(|variants| !variants.is_empty())
                    .unwrap_or(&flag.variants);
                let (variant, reason) = match variants.pick(context) {
                    Some((variant, picked_by)) => (variant, reason.strongest(picked_by)),
                    None => (VariantResult::disabled(true), reason),
                };
                Evaluation {
                    enabled: true,
                    variant,
                    reason,
                }
            }
        }
    }

    fn activation<'a>(
        &self,
        flag: &'a Flag,
        context: &Context,
        asked: &GroupKey,
    ) -> Activation<'a> {
        if !flag.enabled || !self.requirements_hold(flag, context) {
            return Activation::Off(Reason::Disabled);
        }
        if flag.strategies.is_empty() {
            return Activation::On {
                strategy: None,
                reason: Reason::Static,
            };
        }
        let mut missed_by = Reason::Static;
        for strategy in &flag.strategies {
            let (hit, reason) = strategy.check(context, asked);
            if hit {
                return Activation::On {
                    strategy: Some(strategy),
                    reason,
                };
            }
            missed_by = missed_by.strongest(reason);
        }
        Activation::Off(missed_by)
    }

    /// Parents are evaluated with the child's context, and asked about as the child (as
    /// Unleash's engine does). A parent never has parents itself (the set marks such a
    /// requirement unsatisfiable), so this recurses one level at most.
    fn requirements_hold(&self, flag: &Flag, context: &Context) -> bool {
        let asked = &flag.group;
        flag.requirements.iter().all(|requirement| {
            let Some(parent) = requirement.parent else {
                return false;
            };
            if !requirement.enabled {
                return !self.is_on(parent, context, asked);
            }
            if requirement.variants.is_empty() {
                return self.is_on(parent, context, asked);
            }
            // A parent that has no variant to give (it has none) meets a variant requirement
            // by being on, as in Unleash's engine.
            let evaluation = self.evaluate_as(parent, context, asked);
            let variant = &evaluation.variant;
            evaluation.enabled
                && (!variant.enabled || requirement.variants.iter().any(|v| **v == *variant.name))
        })
    }

    fn is_on(&self, position: usize, context: &Context, asked: &GroupKey) -> bool {
        matches!(
            self.activation(&self.flags[position], context, asked),
            Activation::On { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flags::ClientFeatures;
    use crate::flags::hash::VARIANT_SEED;

    fn flags(features: &str) -> FeatureSet {
        let payload: ClientFeatures =
            serde_json::from_str(&format!(r#"{{"version":2,"features":{features}}}"#)).unwrap();
        FeatureSet::from_client_features(payload)
    }

    fn user(id: &str) -> Context {
        Context {
            user_id: Some(id.into()),
            environment: Some("prod".into()),
            ..Context::default()
        }
    }

    fn reason(set: &FeatureSet, flag: &str, context: &Context) -> (bool, Reason) {
        let evaluation = set.evaluate(flag, context).unwrap();
        (evaluation.enabled, evaluation.reason)
    }

    #[test]
    fn reasons_follow_the_ofrep_mapping() {
        let set = flags(
            r#"[
              {"name":"off","enabled":false},
              {"name":"everyone","enabled":true},
              {"name":"prod-only","enabled":true,"strategies":[{"name":"default",
                "constraints":[{"contextName":"environment","operator":"IN","values":["prod"]}]}]},
              {"name":"half","enabled":true,"strategies":[{"name":"flexibleRollout",
                "parameters":{"rollout":"50","stickiness":"userId"}}]},
              {"name":"custom","enabled":true,"strategies":[{"name":"myStrategy"}]},
              {"name":"two-ways","enabled":true,"variants":[
                {"name":"a","weight":500},{"name":"b","weight":500}]}
            ]"#,
        );
        let context = user("7");
        assert_eq!(reason(&set, "off", &context), (false, Reason::Disabled));
        assert_eq!(reason(&set, "everyone", &context), (true, Reason::Static));
        assert_eq!(
            reason(&set, "prod-only", &context),
            (true, Reason::TargetingMatch)
        );
        assert_eq!(reason(&set, "half", &context).1, Reason::Split);
        assert_eq!(reason(&set, "custom", &context), (false, Reason::Unknown));
        assert_eq!(reason(&set, "two-ways", &context), (true, Reason::Split));
        let dev = Context {
            environment: Some("dev".into()),
            ..context
        };
        assert_eq!(
            reason(&set, "prod-only", &dev),
            (false, Reason::TargetingMatch)
        );
    }

    /// The variant a 50/50 split of `a` and `b` gives this id in this group.
    fn half_and_half(group: &str, id: &str) -> &'static str {
        let bucket = GroupKey::new(group).bucket(id, 1000, VARIANT_SEED);
        if bucket <= 500 { "a" } else { "b" }
    }

    fn variant_name(set: &FeatureSet, context: &Context) -> String {
        set.get_variant("f", context).name.into_owned()
    }

    #[test]
    fn strategy_variants_stick_to_the_strategy_stickiness_and_group_not_their_own() {
        let set = flags(
            r#"[{"name":"f","enabled":true,"strategies":[{"name":"flexibleRollout",
                "parameters":{"rollout":"100","stickiness":"sessionId","groupId":"g"},
                "variants":[{"name":"a","weight":500,"stickiness":"userId"},
                            {"name":"b","weight":500,"stickiness":"userId"}]}]}]"#,
        );
        for n in 0..40 {
            let session = format!("s-{n}");
            let context = Context {
                session_id: Some(session.clone()),
                ..user("the-same-user")
            };
            assert_eq!(variant_name(&set, &context), half_and_half("g", &session));
        }
    }

    #[test]
    fn strategy_variants_without_a_stickiness_parameter_use_default_stickiness() {
        let set = flags(
            r#"[{"name":"f","enabled":true,"strategies":[{"name":"default",
                "variants":[{"name":"a","weight":500,"stickiness":"sessionId"},
                            {"name":"b","weight":500,"stickiness":"sessionId"}]}]}]"#,
        );
        for n in 0..40 {
            let id = format!("u-{n}");
            let context = Context {
                session_id: Some("the-same-session".into()),
                ..user(&id)
            };
            assert_eq!(variant_name(&set, &context), half_and_half("f", &id));
        }
    }

    #[test]
    fn a_child_is_off_when_its_parent_is_missing_and_says_so() {
        let set =
            flags(r#"[{"name":"child","enabled":true,"dependencies":[{"feature":"ghost"}]}]"#);
        assert_eq!(reason(&set, "child", &user("1")), (false, Reason::Disabled));
        assert_eq!(set.warnings().len(), 1);
        assert_eq!(
            set.warnings()[0].to_string(),
            "flag child: parent flag ghost does not exist, so this flag is always off"
        );
    }

    #[test]
    fn a_variant_requirement_on_a_parent_without_variants_needs_only_the_parent_on() {
        let set = flags(
            r#"[{"name":"parent","enabled":true},
                {"name":"off-parent","enabled":false},
                {"name":"child","enabled":true,"dependencies":[{"feature":"parent","variants":["x"]}]},
                {"name":"other","enabled":true,"dependencies":[{"feature":"off-parent","variants":["x"]}]}]"#,
        );
        assert!(set.is_enabled("child", &user("1")));
        assert!(!set.is_enabled("other", &user("1")));
    }

    #[test]
    fn a_parents_rollout_without_a_group_is_hashed_with_the_childs_name() {
        let set = flags(
            r#"[{"name":"parent","enabled":true,"strategies":[{"name":"flexibleRollout",
                  "parameters":{"rollout":"50","stickiness":"userId"}}]},
                {"name":"child","enabled":true,"dependencies":[{"feature":"parent"}]}]"#,
        );
        let in_half = |group: &str, id: &str| GroupKey::new(group).bucket(id, 100, 0) <= 50;
        let differs = (0..100)
            .map(|n| format!("u-{n}"))
            .find(|id| in_half("parent", id) != in_half("child", id))
            .expect("some user is in one half and not the other");
        let context = user(&differs);
        assert_eq!(
            set.is_enabled("parent", &context),
            in_half("parent", &differs)
        );
        assert_eq!(
            set.is_enabled("child", &context),
            in_half("child", &differs)
        );
    }

    #[test]
    fn unknown_flags_are_off_with_the_disabled_variant() {
        let set = flags("[]");
        assert!(set.evaluate("nope", &user("1")).is_none());
        assert!(!set.is_enabled("nope", &user("1")));
        assert_eq!(
            set.get_variant("nope", &user("1")),
            VariantResult::disabled(false)
        );
    }

    #[test]
    fn a_later_flag_of_the_same_name_replaces_the_earlier_one() {
        let set = flags(r#"[{"name":"x","enabled":false},{"name":"x","enabled":true}]"#);
        assert_eq!(set.len(), 1);
        assert!(set.is_enabled("x", &user("1")));
    }

    #[test]
    fn evaluate_all_gives_every_flag_in_payload_order() {
        let set = flags(
            r#"[{"name":"b","enabled":true},{"name":"a","enabled":false,"impressionData":true}]"#,
        );
        let context = user("1");
        let all: Vec<_> = set
            .evaluate_all(&context)
            .map(|(info, evaluation)| {
                (info.name.as_str(), info.impression_data, evaluation.enabled)
            })
            .collect();
        assert_eq!(all, [("b", false, true), ("a", true, false)]);
    }
}
