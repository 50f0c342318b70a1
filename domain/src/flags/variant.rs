//! Variants: which one a context gets, and the result SDKs receive.
//!
//! An override whose context field holds one of its values wins. Otherwise the context's
//! stickiness id is hashed into 1..=total weight (seed 86028157) and the variants are walked in
//! order, adding up weights, until the sum reaches that bucket.
//!
//! Where the stickiness and the hashing group come from depends on whose variants they are, as
//! in Unleash's engine (yggdrasil), the core of Unleash Edge and of the current SDKs:
//! - a flag's own variants: the first variant's `stickiness`, grouped by the flag's name;
//! - a strategy's variants: the strategy's `stickiness` parameter (else `default`), grouped by
//!   its `groupId` parameter (else the flag's name). The variants' own `stickiness` fields are
//!   ignored, so that the variant follows the same id as the rollout that let the user in.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::constraint::TextSet;
use super::context::{Context, ContextField, Stickiness, StickyId};
use super::evaluate::Reason;
use super::hash::{GroupKey, VARIANT_SEED, random_bucket};
use super::model::{self, Payload};

/// The variant a context gets, in the shape Unleash's frontend API and SDKs use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VariantResult<'a> {
    pub name: Cow<'a, str>,
    /// False for the `disabled` placeholder, true for a real variant.
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Cow<'a, Payload>>,
    /// Whether the flag itself is on for this context.
    pub feature_enabled: bool,
}

impl VariantResult<'_> {
    /// The name of the placeholder variant returned when no variant applies.
    pub const DISABLED: &'static str = "disabled";

    /// The placeholder: the flag is off, unknown, or on without variants.
    pub fn disabled(feature_enabled: bool) -> VariantResult<'static> {
        VariantResult {
            name: Cow::Borrowed(Self::DISABLED),
            enabled: false,
            payload: None,
            feature_enabled,
        }
    }

    /// A copy that owns its strings, to keep after the flag set is replaced.
    pub fn into_owned(self) -> VariantResult<'static> {
        VariantResult {
            name: Cow::Owned(self.name.into_owned()),
            enabled: self.enabled,
            payload: self.payload.map(|p| Cow::Owned(p.into_owned())),
            feature_enabled: self.feature_enabled,
        }
    }
}

/// The variants of a flag or of a strategy, ready to pick from.
#[derive(Debug, Clone)]
pub(super) struct VariantSet {
    variants: Box<[Variant]>,
    total_weight: u32,
    group: GroupKey,
    stickiness: Stickiness,
    /// More than one variant has weight, so the pick depends on the hash.
    splits: bool,
}

#[derive(Debug, Clone)]
struct Variant {
    name: Box<str>,
    weight: u32,
    payload: Option<Payload>,
    overrides: Box<[(ContextField, TextSet)]>,
}

impl VariantSet {
    /// A flag's own variants: sticky on the first variant's `stickiness`, grouped by `flag`.
    pub(super) fn for_flag(raw: Vec<model::Variant>, flag: &str) -> Self {
        let stickiness = Stickiness::parse(raw.first().and_then(|v| v.stickiness.as_deref()));
        Self::compile(raw, flag, stickiness)
    }

    /// A strategy's variants: sticky on the strategy's `stickiness` parameter and grouped by
    /// `group` (its `groupId`, else the flag name). The variants' own stickiness and overrides
    /// are ignored: Unleash's strategy variants have no overrides, and its engine drops them.
    pub(super) fn for_strategy(
        raw: Vec<model::Variant>,
        group: &str,
        stickiness: Option<&str>,
    ) -> Self {
        let raw = raw
            .into_iter()
            .map(|variant| model::Variant {
                overrides: Vec::new(),
                ..variant
            })
            .collect();
        Self::compile(raw, group, Stickiness::parse(stickiness))
    }

    fn compile(raw: Vec<model::Variant>, group: &str, stickiness: Stickiness) -> Self {
        let variants: Box<[Variant]> = raw
            .into_iter()
            .map(|v| Variant {
                weight: u32::try_from(v.weight).unwrap_or(0),
                overrides: v
                    .overrides
                    .iter()
                    .map(|o| {
                        let values = TextSet::new(o.values.iter().map(String::as_str));
                        (ContextField::parse(&o.context_name), values)
                    })
                    .collect(),
                name: v.name.into(),
                payload: v.payload,
            })
            .collect();
        VariantSet {
            total_weight: variants
                .iter()
                .map(|v| v.weight)
                .fold(0, u32::saturating_add),
            splits: variants.iter().filter(|v| v.weight > 0).count() > 1,
            group: GroupKey::new(group),
            stickiness,
            variants,
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.variants.is_empty()
    }

    /// The variant for this context, and what decided it; `None` when there are no variants or
    /// none has weight.
    pub(super) fn pick<'a>(&'a self, context: &Context) -> Option<(VariantResult<'a>, Reason)> {
        if let Some(pinned) = self.overridden(context) {
            return Some((pinned.result(), Reason::TargetingMatch));
        }
        if self.total_weight == 0 {
            return None;
        }
        let target = match self.stickiness.variant_id(context) {
            StickyId::Id(id) => self.group.bucket(&id, self.total_weight, VARIANT_SEED),
            StickyId::Random => random_bucket(self.total_weight),
        };
        let mut sum = 0u32;
        let chosen = self.variants.iter().find(|v| {
            sum = sum.saturating_add(v.weight);
            sum >= target
        })?;
        let reason = if self.splits {
            Reason::Split
        } else {
            Reason::Static
        };
        Some((chosen.result(), reason))
    }

    fn overridden(&self, context: &Context) -> Option<&Variant> {
        self.variants.iter().find(|v| {
            v.overrides.iter().any(|(field, values)| {
                context
                    .text(field)
                    .is_some_and(|value| values.contains(&value))
            })
        })
    }
}

impl Variant {
    fn result(&self) -> VariantResult<'_> {
        VariantResult {
            name: Cow::Borrowed(&self.name),
            enabled: true,
            payload: self.payload.as_ref().map(Cow::Borrowed),
            feature_enabled: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn variant(name: &str, weight: i32) -> model::Variant {
        model::Variant {
            name: name.into(),
            weight,
            weight_type: None,
            stickiness: None,
            payload: None,
            overrides: Vec::new(),
        }
    }

    fn user(id: &str) -> Context {
        Context {
            user_id: Some(id.into()),
            ..Context::default()
        }
    }

    #[test]
    fn overrides_win_over_the_hash() {
        let mut pinned = variant("b", 1);
        pinned.overrides.push(model::Override {
            context_name: "userId".into(),
            values: vec!["42".into()],
        });
        let set = VariantSet::for_flag(vec![variant("a", 1000), pinned], "flag");
        let (result, reason) = set.pick(&user("42")).unwrap();
        assert_eq!(
            (result.name.as_ref(), reason),
            ("b", Reason::TargetingMatch)
        );
    }

    #[test]
    fn overrides_of_strategy_variants_are_ignored() {
        let mut pinned = variant("b", 0);
        pinned.overrides.push(model::Override {
            context_name: "userId".into(),
            values: vec!["42".into()],
        });
        let set = VariantSet::for_strategy(vec![variant("a", 1000), pinned], "flag", None);
        assert_eq!(set.pick(&user("42")).unwrap().0.name, "a");
    }

    #[test]
    fn zero_weight_variants_are_never_picked_by_the_hash() {
        let set = VariantSet::for_flag(vec![variant("never", 0), variant("always", 10)], "flag");
        for id in 0..50 {
            let (result, reason) = set.pick(&user(&id.to_string())).unwrap();
            assert_eq!((result.name.as_ref(), reason), ("always", Reason::Static));
        }
        let empty = VariantSet::for_flag(vec![variant("never", 0)], "flag");
        assert!(empty.pick(&user("1")).is_none());
    }

    #[test]
    fn the_same_user_always_gets_the_same_variant() {
        let set = VariantSet::for_flag(vec![variant("a", 500), variant("b", 500)], "flag");
        let first = set.pick(&user("u-7")).unwrap().0;
        for _ in 0..10 {
            assert_eq!(set.pick(&user("u-7")).unwrap().0, first);
        }
    }

    #[test]
    fn the_disabled_placeholder_serializes_like_unleash() {
        let json = serde_json::to_string(&VariantResult::disabled(true)).unwrap();
        assert_eq!(
            json,
            r#"{"name":"disabled","enabled":false,"feature_enabled":true}"#
        );
    }
}
