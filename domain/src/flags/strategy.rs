//! Activation strategies, compiled once: parameters are parsed and lists built when the flags
//! are built.
//!
//! A strategy matches when all its constraints (its own, then its segments') hold and its rule
//! holds. Unknown (custom) strategies never match: Flightdeck has no code to run for them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::OnceLock;

use ipnet::IpNet;

use super::constraint::{Constraint, TextSet, parse_network};
use super::context::{Context, ContextField, Stickiness, StickyId};
use super::evaluate::Reason;
use super::hash::{GroupKey, ROLLOUT_SEED, random_bucket};
use super::model;
use super::set::DefinitionProblem;
use super::variant::VariantSet;

/// A strategy ready to evaluate.
#[derive(Debug, Clone)]
pub(super) struct Strategy {
    rule: Rule,
    constraints: Box<[Constraint]>,
    /// Variants that replace the flag's when this strategy is the first to match; may be empty.
    pub(super) variants: VariantSet,
}

#[derive(Debug, Clone)]
enum Rule {
    /// `default`: on for everyone.
    Always,
    /// A custom strategy, a missing segment or an unusable parameter; the reason says which.
    Never(Reason),
    /// `userWithId`: the userId is in the list.
    UserIds(TextSet),
    /// `flexibleRollout`, `gradualRolloutUserId`, `gradualRolloutSessionId`: the stickiness id
    /// hashes into the first `percent` buckets of 100.
    Rollout {
        percent: u32,
        stickiness: Stickiness,
        /// The `groupId`; without one, the name of the flag being asked about. That is the
        /// flag's own name, except when it is checked as a parent for a child: Unleash's engine
        /// then hashes with the child's name, and so do we, to put users in the same buckets.
        group: Option<GroupKey>,
    },
    /// `gradualRolloutRandom`, or a rollout sticky on `random`: a fresh draw each time.
    Random { percent: u32 },
    /// `remoteAddress`: the address is one of the entries as written, or inside one of the
    /// entries that parse as addresses or ranges.
    RemoteAddress {
        exact: TextSet,
        networks: Box<[IpNet]>,
    },
    /// `applicationHostname`: decided once, as this server's hostname does not change.
    Hostname(bool),
}

/// Compiled segments, by id.
pub(super) type Segments = HashMap<i32, CompiledSegment>;

/// A segment's constraints, compiled once for every strategy that uses it.
#[derive(Debug)]
pub(super) struct CompiledSegment {
    constraints: Box<[Constraint]>,
    /// Reported against each flag that uses the segment.
    problems: Vec<DefinitionProblem>,
}

impl CompiledSegment {
    pub(super) fn compile(raw: &model::Segment) -> Self {
        let mut problems = Vec::new();
        let constraints = raw
            .constraints
            .iter()
            .map(|c| Constraint::compile(c, &mut problems))
            .collect();
        CompiledSegment {
            constraints,
            problems,
        }
    }
}

impl Strategy {
    pub(super) fn compile(
        raw: model::Strategy,
        flag: &str,
        segments: &Segments,
        problems: &mut Vec<DefinitionProblem>,
    ) -> Self {
        let mut rule = Rule::compile(&raw, problems);
        let mut constraints: Vec<Constraint> = raw
            .constraints
            .iter()
            .map(|c| Constraint::compile(c, problems))
            .collect();
        for id in &raw.segments {
            match segments.get(id) {
                Some(segment) => {
                    constraints.extend(segment.constraints.iter().cloned());
                    problems.extend(segment.problems.iter().cloned());
                }
                None => {
                    problems.push(DefinitionProblem::MissingSegment { id: *id });
                    rule = Rule::Never(Reason::Static);
                }
            }
        }
        let group = raw.parameters.get("groupId").map_or(flag, String::as_str);
        let stickiness = raw.parameters.get("stickiness").map(String::as_str);
        Strategy {
            variants: VariantSet::for_strategy(raw.variants, group, stickiness),
            rule,
            constraints: constraints.into_boxed_slice(),
        }
    }

    /// Whether the strategy matches, and what decided it; `asked` is the group of the flag being
    /// asked about (see `Rule::Rollout`).
    pub(super) fn check(&self, context: &Context, asked: &GroupKey) -> (bool, Reason) {
        if !self.constraints.iter().all(|c| c.matches(context)) {
            return (false, Reason::TargetingMatch);
        }
        let (hit, reason) = self.rule.check(context, asked);
        if self.constraints.is_empty() {
            (hit, reason)
        } else {
            (hit, reason.strongest(Reason::TargetingMatch))
        }
    }
}

impl Rule {
    fn compile(raw: &model::Strategy, problems: &mut Vec<DefinitionProblem>) -> Self {
        let parameter = |name: &str| raw.parameters.get(name).map(String::as_str);
        let mut percent = |name: &str| {
            let percent = parse_percent(parameter(name));
            if percent.is_none() {
                problems.push(DefinitionProblem::BadParameter {
                    strategy: raw.name.clone(),
                    parameter: name.to_owned(),
                    value: parameter(name).unwrap_or_default().to_owned(),
                });
            }
            percent
        };
        let unusable = Rule::Never(Reason::Static);
        match raw.name.as_str() {
            "default" => Rule::Always,
            "userWithId" => Rule::UserIds(TextSet::new(user_ids(parameter("userIds")))),
            "flexibleRollout" => match (
                percent("rollout"),
                Stickiness::parse(parameter("stickiness")),
            ) {
                (None, _) => unusable,
                (Some(percent), Stickiness::Random) => Rule::Random { percent },
                (Some(percent), stickiness) => Rule::Rollout {
                    percent,
                    stickiness,
                    group: parameter("groupId").map(GroupKey::new),
                },
            },
            "gradualRolloutUserId" | "gradualRolloutSessionId" => {
                let field = if raw.name == "gradualRolloutUserId" {
                    ContextField::UserId
                } else {
                    ContextField::SessionId
                };
                // These older rollouts have no default group: without `groupId` Unleash's
                // engine never turns them on.
                match (percent("percentage"), parameter("groupId")) {
                    (Some(percent), Some(group)) => Rule::Rollout {
                        percent,
                        stickiness: Stickiness::Field(field),
                        group: Some(GroupKey::new(group)),
                    },
                    (Some(_), None) => {
                        problems.push(DefinitionProblem::BadParameter {
                            strategy: raw.name.clone(),
                            parameter: "groupId".to_owned(),
                            value: String::new(),
                        });
                        unusable
                    }
                    (None, _) => unusable,
                }
            }
            "gradualRolloutRandom" => {
                percent("percentage").map_or(unusable, |percent| Rule::Random { percent })
            }
            "remoteAddress" => {
                let mut networks = Vec::new();
                for entry in list(parameter("IPs")) {
                    match parse_network(entry) {
                        Some(network) => networks.push(network),
                        None => problems.push(DefinitionProblem::BadParameter {
                            strategy: raw.name.clone(),
                            parameter: "IPs".to_owned(),
                            value: entry.to_owned(),
                        }),
                    }
                }
                Rule::RemoteAddress {
                    exact: TextSet::new(list(parameter("IPs"))),
                    networks: networks.into_boxed_slice(),
                }
            }
            "applicationHostname" => {
                Rule::Hostname(hostname_listed(parameter("hostNames"), local_hostname()))
            }
            custom => {
                problems.push(DefinitionProblem::CustomStrategy {
                    name: custom.to_owned(),
                });
                Rule::Never(Reason::Unknown)
            }
        }
    }

    fn check(&self, context: &Context, asked: &GroupKey) -> (bool, Reason) {
        match self {
            Rule::Always => (true, Reason::Static),
            Rule::Never(reason) => (false, *reason),
            Rule::UserIds(ids) => {
                let hit = context
                    .user_id
                    .as_deref()
                    .is_some_and(|id| ids.contains(id));
                (hit, Reason::TargetingMatch)
            }
            Rule::Random { percent } => match fixed(*percent) {
                Some(hit) => (hit, Reason::Static),
                None => (random_bucket(100) <= *percent, Reason::Split),
            },
            Rule::Rollout {
                percent,
                stickiness,
                group,
            } => {
                let Some(id) = stickiness.rollout_id(context) else {
                    return (false, Reason::TargetingMatch);
                };
                if let Some(hit) = fixed(*percent) {
                    return (hit, Reason::Static);
                }
                let group = group.as_ref().unwrap_or(asked);
                let bucket = match id {
                    StickyId::Id(id) => group.bucket(&id, 100, ROLLOUT_SEED),
                    StickyId::Random => random_bucket(100),
                };
                (bucket <= *percent, Reason::Split)
            }
            Rule::RemoteAddress { exact, networks } => {
                let Some(address) = context.remote_address.as_deref().map(str::trim) else {
                    return (false, Reason::TargetingMatch);
                };
                let hit = exact.contains(address)
                    || address
                        .parse::<IpAddr>()
                        .is_ok_and(|ip| networks.iter().any(|n| n.contains(&ip)));
                (hit, Reason::TargetingMatch)
            }
            Rule::Hostname(hit) => (*hit, Reason::Static),
        }
    }
}

/// The outcome of a 0 % or 100 % rollout, which needs no hash.
fn fixed(percent: u32) -> Option<bool> {
    match percent {
        0 => Some(false),
        100 => Some(true),
        _ => None,
    }
}

/// A percentage parameter ("0" to "100"; fractions round down, more than 100 counts as 100).
fn parse_percent(text: Option<&str>) -> Option<u32> {
    let value: f64 = text?.trim().parse().ok()?;
    // The cast is exact: the value is a whole number in 0..=100 by then.
    (value.is_finite() && value >= 0.0).then(|| value.min(100.0).floor() as u32)
}

/// A comma-separated parameter, trimmed, without empty entries.
fn list(text: Option<&str>) -> impl Iterator<Item = &str> {
    text.unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// The `userIds` parameter, trimmed. An empty entry (`"a, b,"`) is kept: in Unleash's engine
/// it lets in a context whose userId is empty.
fn user_ids(text: Option<&str>) -> impl Iterator<Item = &str> {
    text.into_iter().flat_map(|t| t.split(',').map(str::trim))
}

fn hostname_listed(host_names: Option<&str>, hostname: &str) -> bool {
    let hostname = hostname.to_lowercase();
    list(host_names).any(|name| name.to_lowercase() == hostname)
}

/// This server's hostname, as Unleash SDKs find theirs: `HOSTNAME`, else the kernel's.
pub(super) fn local_hostname() -> &'static str {
    static HOSTNAME: OnceLock<String> = OnceLock::new();
    HOSTNAME.get_or_init(|| {
        let from_env = std::env::var("HOSTNAME").ok();
        let from_os = || {
            ["/proc/sys/kernel/hostname", "/etc/hostname"]
                .iter()
                .find_map(|path| std::fs::read_to_string(path).ok())
        };
        from_env
            .filter(|h| !h.trim().is_empty())
            .or_else(from_os)
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|| "undefined".to_owned())
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn strategy(name: &str, parameters: &[(&str, &str)]) -> Strategy {
        let raw = model::Strategy {
            name: name.into(),
            sort_order: None,
            parameters: parameters
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
            constraints: Vec::new(),
            segments: Vec::new(),
            variants: Vec::new(),
        };
        Strategy::compile(raw, "flag", &Segments::new(), &mut Vec::new())
    }

    impl Strategy {
        /// `check` for the flag the strategy belongs to.
        fn check_as_flag(&self, context: &Context) -> (bool, Reason) {
            self.check(context, &GroupKey::new("flag"))
        }
    }

    fn user(id: &str) -> Context {
        Context {
            user_id: Some(id.into()),
            ..Context::default()
        }
    }

    #[test]
    fn a_partial_rollout_is_decided_by_the_hash() {
        let rollout = strategy(
            "flexibleRollout",
            &[("rollout", "10"), ("groupId", "Feature.flexibleRollout.10")],
        );
        assert_eq!(rollout.check_as_flag(&user("174")), (true, Reason::Split));
        assert_eq!(rollout.check_as_flag(&user("499")), (false, Reason::Split));
    }

    #[test]
    fn full_and_empty_rollouts_are_static() {
        let full = strategy("flexibleRollout", &[("rollout", "100")]);
        assert_eq!(
            full.check_as_flag(&Context::default()),
            (true, Reason::Static)
        );
        let none = strategy("gradualRolloutRandom", &[("percentage", "0")]);
        assert_eq!(none.check_as_flag(&user("1")), (false, Reason::Static));
    }

    #[test]
    fn gradual_rollouts_by_user_or_session_without_a_group_are_off() {
        for kind in ["gradualRolloutUserId", "gradualRolloutSessionId"] {
            let rollout = strategy(kind, &[("percentage", "100")]);
            let context = Context {
                session_id: Some("s".into()),
                ..user("1")
            };
            assert_eq!(rollout.check_as_flag(&context), (false, Reason::Static));
        }
    }

    #[test]
    fn a_rollout_on_a_missing_field_is_off() {
        let rollout = strategy(
            "flexibleRollout",
            &[("rollout", "100"), ("stickiness", "tenant")],
        );
        assert_eq!(
            rollout.check_as_flag(&user("1")),
            (false, Reason::TargetingMatch)
        );
    }

    #[test]
    fn user_ids_are_trimmed_and_a_trailing_comma_lets_in_an_empty_id() {
        let listed = strategy("userWithId", &[("userIds", "123, 222 ,88,")]);
        assert!(listed.check_as_flag(&user("222")).0);
        assert!(listed.check_as_flag(&user("")).0);
        let tidy = strategy("userWithId", &[("userIds", "123,222")]);
        assert!(!tidy.check_as_flag(&user("")).0);
        assert!(!strategy("userWithId", &[]).check_as_flag(&user("")).0);
    }

    #[test]
    fn remote_addresses_match_exactly_or_by_range() {
        let listed = strategy(
            "remoteAddress",
            &[("IPs", "10.0.0.0/8, 192.168.0.1, 192.invalid")],
        );
        let from = |address: &str| Context {
            remote_address: Some(address.into()),
            ..Context::default()
        };
        assert!(listed.check_as_flag(&from("10.20.30.40")).0);
        assert!(listed.check_as_flag(&from("192.168.0.1")).0);
        assert!(listed.check_as_flag(&from("192.invalid")).0);
        assert!(!listed.check_as_flag(&from("192.168.0.2")).0);
        assert!(!listed.check_as_flag(&Context::default()).0);
    }

    #[test]
    fn custom_strategies_never_match() {
        assert_eq!(
            strategy("myCustom", &[]).check_as_flag(&user("1")),
            (false, Reason::Unknown)
        );
    }

    #[test]
    fn host_names_compare_without_case() {
        assert!(hostname_listed(Some("web-1, Build-Box"), "build-box"));
        assert!(!hostname_listed(Some(""), "build-box"));
        assert!(!local_hostname().is_empty());
    }

    #[test]
    fn percentages_round_down_and_cap_at_100() {
        assert_eq!(parse_percent(Some("50.9")), Some(50));
        assert_eq!(parse_percent(Some("150")), Some(100));
        assert_eq!(parse_percent(Some("-1")), None);
        assert_eq!(parse_percent(Some("half")), None);
    }
}
