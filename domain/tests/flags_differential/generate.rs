//! Seeded flag sets and contexts for the differential test.
//!
//! Definitions are valid ones, as Unleash would send them: every strategy kind, every operator
//! (inverted or not, case-insensitive or not), segments, strategy and flag variants with
//! payloads and overrides, and dependencies of every kind. Context values come from the same
//! small pools as the definitions' operands, so that constraints, user lists, overrides and
//! address ranges hit as often as they miss; ids are drawn from a larger range so that rollouts
//! and variant splits are decided by the hash. A share of the flags are probes (one `default`
//! strategy with one constraint, one strategy alone, one dependency alone) so that the test can
//! check that every branch was seen both ways.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use domain::flags::Context;
use domain::flags::model::{
    ClientFeature, ClientFeatures, Constraint, Dependency, Operator, Override, Payload,
    PayloadKind, Segment, Strategy, Variant,
};
use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;

use crate::pools::*;

pub struct Generator {
    rng: StdRng,
    hostname: String,
}

impl Generator {
    pub fn new(rng: StdRng, hostname: String) -> Self {
        Generator { rng, hostname }
    }

    /// A flag set: a few parents, then flags that may depend on them, some probes among both.
    pub fn world(&mut self) -> ClientFeatures {
        let segments: Vec<Segment> = (1..=self.rng.random_range(0..=3))
            .map(|id| Segment {
                id,
                name: Some(format!("segment-{id}")),
                constraints: (0..self.rng.random_range(1..=2))
                    .map(|_| self.constraint())
                    .collect(),
            })
            .collect();
        let segment_ids: Vec<i32> = segments.iter().map(|s| s.id).collect();
        let parents = self.rng.random_range(3..=4);
        let mut features: Vec<ClientFeature> = Vec::new();
        for position in 0..self.rng.random_range(7..=10) {
            let name = format!("flag-{position}");
            let mut flag = if self.rng.random_bool(0.35) {
                self.probe(&name, &segment_ids)
            } else {
                self.flag(&name, &segment_ids)
            };
            if position >= parents && self.rng.random_bool(0.6) {
                flag.dependencies = self.dependencies(&features[..parents], &features[parents..]);
                if self.rng.random_bool(0.4) {
                    flag.strategies.clear();
                }
            }
            features.push(flag);
        }
        ClientFeatures {
            version: 2,
            features,
            segments,
            query: None,
            meta: None,
        }
    }

    pub fn context(&mut self) -> Context {
        let user_id = self.maybe(0.85, |g| {
            if g.rng.random_bool(0.3) {
                g.pick(LISTED_USERS).to_string()
            } else {
                format!("user-{}", g.rng.random_range(0..1000))
            }
        });
        let properties = PROPERTIES
            .iter()
            .filter_map(|(name, values)| {
                self.maybe(0.6, |g| (name.to_string(), g.pick(values).to_string()))
            })
            .collect::<BTreeMap<_, _>>();
        Context {
            user_id,
            session_id: self.maybe(0.6, |g| {
                if g.rng.random_bool(0.3) {
                    g.pick(SESSIONS).to_string()
                } else {
                    format!("session-{}", g.rng.random_range(0..1000))
                }
            }),
            remote_address: self.maybe(0.6, |g| g.pick(ADDRESSES).to_string()),
            environment: self.maybe(0.7, |g| g.pick(ENVIRONMENTS).to_string()),
            app_name: self.maybe(0.5, |g| g.pick(APPS).to_string()),
            current_time: self.maybe(0.5, |g| g.pick(TIMES).parse::<DateTime<Utc>>().unwrap()),
            properties,
        }
    }

    fn flag(&mut self, name: &str, segments: &[i32]) -> ClientFeature {
        let strategies = (0..self.rng.random_range(0..=3))
            .map(|order| {
                let kind = *self.pick(&STRATEGIES);
                let mut strategy = self.strategy(kind, name);
                strategy.sort_order = Some(order);
                strategy.constraints = (0..self.count(&[0.5, 0.35, 0.15]))
                    .map(|_| self.constraint())
                    .collect();
                if !segments.is_empty() && self.rng.random_bool(0.25) {
                    let count = self.rng.random_range(1..=segments.len().min(2));
                    strategy.segments = segments
                        .choose_multiple(&mut self.rng, count)
                        .copied()
                        .collect();
                }
                if self.rng.random_bool(0.3) {
                    strategy.variants = self.variants(&["s-a", "s-b", "s-c"], true);
                }
                strategy
            })
            .collect();
        let variants = if self.rng.random_bool(0.45) {
            self.variants(&["blue", "green", "red", "yellow"], false)
        } else {
            Vec::new()
        };
        self.feature(name, strategies, variants)
    }

    /// A flag whose outcome the coverage check can attribute: one `default` strategy with one
    /// constraint or one segment, or one strategy of any kind with nothing else.
    fn probe(&mut self, name: &str, segments: &[i32]) -> ClientFeature {
        let strategy = match self.count(&[0.55, 0.15, 0.3]) {
            0 => {
                let mut strategy = self.strategy("default", name);
                strategy.constraints = vec![self.constraint()];
                strategy
            }
            1 if !segments.is_empty() => {
                let mut strategy = self.strategy("default", name);
                strategy.segments = vec![*self.pick(segments)];
                strategy
            }
            _ => {
                let kind = *self.pick(&STRATEGIES);
                self.strategy(kind, name)
            }
        };
        let variants = if self.rng.random_bool(0.3) {
            self.variants(&["blue", "green", "red"], false)
        } else {
            Vec::new()
        };
        let mut flag = self.feature(name, vec![strategy], variants);
        flag.enabled = true;
        flag
    }

    fn feature(
        &mut self,
        name: &str,
        strategies: Vec<Strategy>,
        variants: Vec<Variant>,
    ) -> ClientFeature {
        ClientFeature {
            name: name.to_owned(),
            feature_type: Some("release".into()),
            description: None,
            enabled: self.rng.random_bool(0.85),
            stale: false,
            impression_data: self.rng.random_bool(0.2),
            project: Some("default".into()),
            strategies,
            variants,
            dependencies: Vec::new(),
        }
    }

    fn strategy(&mut self, kind: &str, flag: &str) -> Strategy {
        let mut parameters = BTreeMap::new();
        let mut set = |name: &str, value: String| {
            parameters.insert(name.to_owned(), value);
        };
        match kind {
            "userWithId" => set("userIds", self.user_ids()),
            "flexibleRollout" => {
                set("rollout", self.percentage());
                if let Some(stickiness) = self.maybe(0.8, |g| g.pick(STICKINESS).to_string()) {
                    set("stickiness", stickiness);
                }
                if let Some(group) =
                    self.maybe(0.7, |g| g.pick(&[flag, "g1", "shared"]).to_string())
                {
                    set("groupId", group);
                }
            }
            "gradualRolloutUserId" | "gradualRolloutSessionId" => {
                set("percentage", self.percentage());
                if let Some(group) = self.maybe(0.75, |g| g.pick(&[flag, "g1"]).to_string()) {
                    set("groupId", group);
                }
            }
            "gradualRolloutRandom" => {
                let percentage = *self.pick(&["0", "100"]);
                set("percentage", percentage.to_owned());
            }
            "remoteAddress" => set("IPs", self.list(NETWORKS, 1..=3).join(", ")),
            "applicationHostname" => {
                let names = [
                    self.hostname.clone(),
                    self.hostname.to_uppercase(),
                    "build-box".into(),
                ];
                let count = self.rng.random_range(1..=2);
                let chosen: Vec<String> = names
                    .choose_multiple(&mut self.rng, count)
                    .cloned()
                    .collect();
                set("hostNames", chosen.join(","));
            }
            "myCustomStrategy" => set("anything", "at-all".into()),
            _ => {}
        }
        Strategy {
            name: kind.to_owned(),
            sort_order: None,
            parameters,
            constraints: Vec::new(),
            segments: Vec::new(),
            variants: Vec::new(),
        }
    }

    /// A user list as people type them: spaces around commas, now and then a trailing comma.
    fn user_ids(&mut self) -> String {
        let users = self.list(LISTED_USERS, 1..=4);
        let separator = *self.pick(&[",", ", ", " , "]);
        let mut text = users.join(separator);
        if self.rng.random_bool(0.2) {
            text.push(',');
        }
        text
    }

    fn percentage(&mut self) -> String {
        match self.count(&[0.1, 0.15, 0.75]) {
            0 => "0".into(),
            1 => "100".into(),
            _ => self.rng.random_range(1..=99).to_string(),
        }
    }

    pub fn constraint(&mut self) -> Constraint {
        let operator = *self.pick(&OPERATORS);
        let (context_name, values, value) = self.operands(operator);
        Constraint {
            context_name,
            operator: Operator::from(operator.to_owned()),
            values,
            value,
            inverted: self.rng.random_bool(0.3),
            case_insensitive: self.rng.random_bool(0.4),
        }
    }

    /// The field an operator looks at and its operands, from the pools contexts draw from.
    fn operands(&mut self, operator: &str) -> (String, Vec<String>, Option<String>) {
        let one = |g: &mut Self, pool: &[&str]| Some(g.pick(pool).to_string());
        match operator {
            "IN" | "NOT_IN" => {
                let field = *self.pick(&[
                    "userId",
                    "sessionId",
                    "environment",
                    "appName",
                    "remoteAddress",
                    "plan",
                    "tenant",
                    "email",
                    "currentTime",
                ]);
                let values = self.list(field_values(field), 0..=3);
                (field.into(), values, None)
            }
            "STR_STARTS_WITH" | "STR_ENDS_WITH" | "STR_CONTAINS" => {
                let (field, needles) = *self.pick(NEEDLES);
                (field.into(), self.list(needles, 1..=3), None)
            }
            "REGEX" => {
                let (field, pattern) = *self.pick(PATTERNS);
                (field.into(), Vec::new(), Some(pattern.into()))
            }
            "IN_CIDR" => {
                let field = *self.pick(&["remoteAddress", "ip"]);
                (field.into(), self.list(NETWORKS, 1..=3), None)
            }
            date if date.starts_with("DATE") => {
                let field = *self.pick(&["currentTime", "signup"]);
                (field.into(), Vec::new(), one(self, DATES))
            }
            semver if semver.starts_with("SEMVER") => {
                ("version".into(), Vec::new(), one(self, VERSIONS))
            }
            _ => {
                let field = if self.rng.random_bool(0.9) {
                    "age"
                } else {
                    "version"
                };
                (field.into(), Vec::new(), one(self, NUMBERS))
            }
        }
    }

    /// Variants whose weights add up to 1000; now and then one has no weight.
    fn variants(&mut self, names: &[&str], for_strategy: bool) -> Vec<Variant> {
        let count = self.rng.random_range(1..=names.len());
        let mut weights = split_1000(&mut self.rng, count);
        if count > 1 && self.rng.random_bool(0.15) {
            let last = weights.pop().unwrap_or_default();
            weights[0] += last;
            weights.push(0);
        }
        let stickiness = self.maybe(0.7, |g| g.pick(STICKINESS).to_string());
        let mut variants: Vec<Variant> = names[..count]
            .iter()
            .zip(weights)
            .map(|(name, weight)| Variant {
                name: (*name).to_owned(),
                weight,
                weight_type: Some("variable".into()),
                // Strategy variants carry a stickiness of their own that must be ignored.
                stickiness: if for_strategy {
                    self.maybe(0.5, |g| g.pick(STICKINESS).to_string())
                } else {
                    stickiness.clone()
                },
                payload: self.maybe(0.6, |g| g.payload()),
                overrides: Vec::new(),
            })
            .collect();
        if self.rng.random_bool(0.35) {
            let field = *self.pick(&[
                "userId",
                "plan",
                "environment",
                "tenant",
                "sessionId",
                "appName",
                "remoteAddress",
            ]);
            let values = self.list(field_values(field), 1..=2);
            let pinned = self.rng.random_range(0..variants.len());
            variants[pinned].overrides.push(Override {
                context_name: field.into(),
                values,
            });
        }
        variants
    }

    fn payload(&mut self) -> Payload {
        let (kind, value) = self.pick(&[
            (PayloadKind::String, "plain text"),
            (PayloadKind::Json, r#"{"colour":"blue","size":3}"#),
            (PayloadKind::Csv, "a,b,c"),
            (PayloadKind::Number, "42"),
        ]);
        Payload {
            kind: kind.clone(),
            value: (*value).into(),
        }
    }

    /// One or two parents: plain, required off, required on a variant (or on none), missing,
    /// or a parent that has parents itself.
    fn dependencies(
        &mut self,
        parents: &[ClientFeature],
        children: &[ClientFeature],
    ) -> Vec<Dependency> {
        let count = self.rng.random_range(1..=2).min(parents.len());
        let chosen: Vec<&ClientFeature> = parents.choose_multiple(&mut self.rng, count).collect();
        chosen
            .into_iter()
            .map(|parent| {
                let mut dependency = Dependency {
                    feature: parent.name.clone(),
                    enabled: None,
                    variants: None,
                };
                match self.count(&[0.3, 0.1, 0.2, 0.25, 0.05, 0.05, 0.05]) {
                    0 => {}
                    1 => dependency.enabled = Some(true),
                    2 => dependency.enabled = Some(false),
                    3 => dependency.variants = Some(self.variant_names(parent)),
                    4 => dependency.variants = Some(Vec::new()),
                    5 => dependency.feature = "ghost-flag".into(),
                    _ => match children.iter().find(|c| !c.dependencies.is_empty()) {
                        Some(nested) => dependency.feature = nested.name.clone(),
                        None => dependency.feature = "ghost-flag".into(),
                    },
                }
                dependency
            })
            .collect()
    }

    /// Some of a parent's variant names (its own and its strategies'), and now and then one it
    /// does not have.
    fn variant_names(&mut self, parent: &ClientFeature) -> Vec<String> {
        let mut names: Vec<&str> = parent.variants.iter().map(|v| v.name.as_str()).collect();
        names.extend(
            parent
                .strategies
                .iter()
                .flat_map(|s| &s.variants)
                .map(|v| v.name.as_str()),
        );
        names.push("no-such-variant");
        self.list(&names, 1..=2)
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        items.choose(&mut self.rng).expect("pools are not empty")
    }

    fn list(&mut self, pool: &[&str], count: std::ops::RangeInclusive<usize>) -> Vec<String> {
        let count = self.rng.random_range(count).min(pool.len());
        pool.choose_multiple(&mut self.rng, count)
            .map(|s| s.to_string())
            .collect()
    }

    fn maybe<T>(&mut self, probability: f64, make: impl FnOnce(&mut Self) -> T) -> Option<T> {
        self.rng.random_bool(probability).then(|| make(self))
    }

    /// An index drawn with the given weights.
    fn count(&mut self, weights: &[f64]) -> usize {
        let mut draw = self.rng.random_range(0.0..weights.iter().sum::<f64>());
        for (index, weight) in weights.iter().enumerate() {
            if draw < *weight {
                return index;
            }
            draw -= weight;
        }
        weights.len() - 1
    }
}

/// `count` positive weights that add up to 1000.
fn split_1000(rng: &mut StdRng, count: usize) -> Vec<i32> {
    let mut cuts: Vec<i32> = (1..count).map(|_| rng.random_range(1..1000)).collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut weights = Vec::with_capacity(count);
    let mut previous = 0;
    for cut in cuts.into_iter().chain([1000]) {
        weights.push(cut - previous);
        previous = cut;
    }
    weights
}
