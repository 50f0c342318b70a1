//! Constraints, compiled once: operands are parsed (numbers, times, versions, regexes, CIDR
//! ranges) when the flags are built, so evaluation only reads the context.
//!
//! Rules, as in Unleash: a missing field fails every operator except NOT_IN, which passes;
//! `inverted` negates the result, missing field included. A constraint Flightdeck cannot use (an
//! unknown operator, or an operand that does not parse) never matches, inverted or not, and is
//! reported as a `DefinitionProblem`.

use std::cmp::Ordering;
use std::collections::HashSet;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use ipnet::IpNet;
use regex::{Regex, RegexBuilder};
use semver::Version;

use super::context::{Context, ContextField};
use super::model::{self, Operator};
use super::set::DefinitionProblem;

/// A constraint ready to evaluate.
#[derive(Debug, Clone)]
pub(super) struct Constraint {
    field: ContextField,
    test: Test,
    inverted: bool,
}

#[derive(Debug, Clone)]
enum Test {
    /// IN: the value is in the set.
    In(TextSet),
    /// NOT_IN: the value is missing or not in the set.
    NotIn(TextSet),
    /// STR_*: the value starts with, ends with or contains one of the needles.
    Text {
        position: Position,
        needles: Box<[Needle]>,
        ignore_case: bool,
    },
    /// NUM_*: the value, read as a number, compares with the operand.
    Number { order: Order, operand: f64 },
    /// DATE_AFTER (`after`) or DATE_BEFORE: strictly later or earlier than the operand.
    Date { after: bool, operand: DateTime<Utc> },
    /// SEMVER_*: the value, read as a strict semantic version, compares with the operand.
    Semver { order: Order, operand: Version },
    /// REGEX: the pattern matches somewhere in the value.
    Regex(Regex),
    /// IN_CIDR: the value is an address inside one of the networks.
    Cidr(Box<[IpNet]>),
    /// An unknown operator or an operand that does not parse.
    Never,
}

/// Where a STR_* needle must appear.
#[derive(Debug, Clone, Copy)]
enum Position {
    /// STR_STARTS_WITH.
    Start,
    /// STR_ENDS_WITH.
    End,
    /// STR_CONTAINS.
    Anywhere,
}

/// A comparison an ordered operator asks for.
#[derive(Debug, Clone, Copy)]
enum Order {
    /// `*_EQ`.
    Eq,
    /// `*_GT`.
    Gt,
    /// `*_GTE`.
    Gte,
    /// `*_LT`.
    Lt,
    /// `*_LTE`.
    Lte,
}

impl Order {
    fn holds(self, ordering: Ordering) -> bool {
        match self {
            Order::Eq => ordering.is_eq(),
            Order::Gt => ordering.is_gt(),
            Order::Gte => ordering.is_ge(),
            Order::Lt => ordering.is_lt(),
            Order::Lte => ordering.is_le(),
        }
    }
}

/// A STR_* operand; lower-cased up front when the constraint ignores case.
#[derive(Debug, Clone)]
struct Needle {
    text: Box<str>,
    ascii: bool,
}

impl Constraint {
    pub(super) fn compile(raw: &model::Constraint, problems: &mut Vec<DefinitionProblem>) -> Self {
        let test = Test::compile(raw).unwrap_or_else(|problem| {
            problems.push(problem);
            Test::Never
        });
        Constraint {
            field: ContextField::parse(&raw.context_name),
            test,
            inverted: raw.inverted,
        }
    }

    pub(super) fn matches(&self, context: &Context) -> bool {
        let field = &self.field;
        let holds = match &self.test {
            Test::Never => return false,
            Test::In(set) => context.text(field).is_some_and(|v| set.contains(&v)),
            Test::NotIn(set) => !context.text(field).is_some_and(|v| set.contains(&v)),
            Test::Text {
                position,
                needles,
                ignore_case,
            } => context
                .text(field)
                .is_some_and(|v| text_matches(&v, *position, needles, *ignore_case)),
            Test::Number { order, operand } => context
                .text(field)
                .and_then(|v| v.parse::<f64>().ok())
                .and_then(|number| number.partial_cmp(operand))
                .is_some_and(|ordering| order.holds(ordering)),
            Test::Date { after, operand } => context.time(field).is_some_and(|time| {
                if *after {
                    time > *operand
                } else {
                    time < *operand
                }
            }),
            Test::Semver { order, operand } => context
                .text(field)
                .and_then(|v| Version::parse(&v).ok())
                .is_some_and(|version| order.holds(version.cmp_precedence(operand))),
            Test::Regex(regex) => context.text(field).is_some_and(|v| regex.is_match(&v)),
            Test::Cidr(networks) => context
                .text(field)
                .and_then(|v| v.parse::<IpAddr>().ok())
                .is_some_and(|address| networks.iter().any(|net| net.contains(&address))),
        };
        holds != self.inverted
    }
}

impl Test {
    fn compile(raw: &model::Constraint) -> Result<Self, DefinitionProblem> {
        let values = &raw.values;
        let ignore_case = raw.case_insensitive;
        Ok(match &raw.operator {
            Operator::In => Test::In(TextSet::new(values.iter().map(String::as_str))),
            Operator::NotIn => Test::NotIn(TextSet::new(values.iter().map(String::as_str))),
            Operator::StrStartsWith => Test::text(Position::Start, values, ignore_case),
            Operator::StrEndsWith => Test::text(Position::End, values, ignore_case),
            Operator::StrContains => Test::text(Position::Anywhere, values, ignore_case),
            Operator::NumEq => Test::number(Order::Eq, raw)?,
            Operator::NumGt => Test::number(Order::Gt, raw)?,
            Operator::NumGte => Test::number(Order::Gte, raw)?,
            Operator::NumLt => Test::number(Order::Lt, raw)?,
            Operator::NumLte => Test::number(Order::Lte, raw)?,
            Operator::DateAfter => Test::date(true, raw)?,
            Operator::DateBefore => Test::date(false, raw)?,
            Operator::SemverEq => Test::semver(Order::Eq, raw)?,
            Operator::SemverGt => Test::semver(Order::Gt, raw)?,
            Operator::SemverGte => Test::semver(Order::Gte, raw)?,
            Operator::SemverLt => Test::semver(Order::Lt, raw)?,
            Operator::SemverLte => Test::semver(Order::Lte, raw)?,
            Operator::Regex => {
                let pattern = operand(raw)?;
                let regex = RegexBuilder::new(pattern)
                    .case_insensitive(ignore_case)
                    .build()
                    .map_err(|e| bad_operand(raw, pattern, e))?;
                Test::Regex(regex)
            }
            Operator::InCidr => Test::Cidr(networks(raw)?),
            Operator::Other(name) => {
                return Err(DefinitionProblem::UnknownOperator {
                    operator: name.clone(),
                });
            }
        })
    }

    fn text(position: Position, values: &[String], ignore_case: bool) -> Self {
        let needles = values
            .iter()
            .map(|value| {
                let text: Box<str> = if ignore_case {
                    value.to_lowercase().into()
                } else {
                    value.as_str().into()
                };
                Needle {
                    ascii: text.is_ascii(),
                    text,
                }
            })
            .collect();
        Test::Text {
            position,
            needles,
            ignore_case,
        }
    }

    fn number(order: Order, raw: &model::Constraint) -> Result<Self, DefinitionProblem> {
        let value = operand(raw)?;
        let operand = value.parse().map_err(|e| bad_operand(raw, value, e))?;
        Ok(Test::Number { order, operand })
    }

    fn date(after: bool, raw: &model::Constraint) -> Result<Self, DefinitionProblem> {
        let value = operand(raw)?;
        let operand = value.parse().map_err(|e| bad_operand(raw, value, e))?;
        Ok(Test::Date { after, operand })
    }

    fn semver(order: Order, raw: &model::Constraint) -> Result<Self, DefinitionProblem> {
        let value = operand(raw)?;
        let operand = Version::parse(value).map_err(|e| bad_operand(raw, value, e))?;
        Ok(Test::Semver { order, operand })
    }
}

fn operand(raw: &model::Constraint) -> Result<&str, DefinitionProblem> {
    raw.value
        .as_deref()
        .ok_or_else(|| DefinitionProblem::MissingOperand {
            context_name: raw.context_name.clone(),
            operator: raw.operator.to_string(),
        })
}

fn bad_operand(raw: &model::Constraint, value: &str, reason: impl ToString) -> DefinitionProblem {
    DefinitionProblem::BadOperand {
        context_name: raw.context_name.clone(),
        operator: raw.operator.to_string(),
        value: value.to_owned(),
        reason: reason.to_string(),
    }
}

/// The IN_CIDR operands; unparsable entries are skipped, but if none parses the constraint is
/// unusable.
fn networks(raw: &model::Constraint) -> Result<Box<[IpNet]>, DefinitionProblem> {
    let parsed: Box<[IpNet]> = raw.values.iter().filter_map(|v| parse_network(v)).collect();
    match raw.values.iter().find(|v| parse_network(v).is_none()) {
        Some(bad) if parsed.is_empty() => {
            Err(bad_operand(raw, bad, "not an IP address or CIDR range"))
        }
        _ => Ok(parsed),
    }
}

/// An address (`10.0.0.1`, a network of one) or a CIDR range (`10.0.0.0/8`, `2001:db8::/32`).
pub(super) fn parse_network(text: &str) -> Option<IpNet> {
    let text = text.trim();
    text.parse::<IpNet>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(IpNet::from))
}

fn text_matches(value: &str, position: Position, needles: &[Needle], ignore_case: bool) -> bool {
    if !ignore_case {
        return needles
            .iter()
            .any(|n| find(value.as_bytes(), n.text.as_bytes(), position, false));
    }
    if value.is_ascii() {
        // A lower-cased needle with a non-ASCII character cannot occur in ASCII text.
        return needles
            .iter()
            .any(|n| n.ascii && find(value.as_bytes(), n.text.as_bytes(), position, true));
    }
    let lowered = value.to_lowercase();
    needles
        .iter()
        .any(|n| find(lowered.as_bytes(), n.text.as_bytes(), position, false))
}

fn find(haystack: &[u8], needle: &[u8], position: Position, ascii_ignore_case: bool) -> bool {
    let same = |a: &[u8]| {
        if ascii_ignore_case {
            a.eq_ignore_ascii_case(needle)
        } else {
            a == needle
        }
    };
    if needle.len() > haystack.len() {
        return false;
    }
    match position {
        Position::Start => same(&haystack[..needle.len()]),
        Position::End => same(&haystack[haystack.len() - needle.len()..]),
        Position::Anywhere => needle.is_empty() || haystack.windows(needle.len()).any(same),
    }
}

/// A set of strings to test membership in: a scan for short lists, a hash set for long ones
/// (user id lists can hold thousands).
#[derive(Debug, Clone)]
pub(super) enum TextSet {
    /// Up to `SCAN_LIMIT` entries, scanned in order.
    Few(Box<[Box<str>]>),
    /// More entries, hashed.
    Many(HashSet<Box<str>>),
}

/// Below this many entries a scan beats hashing the probe.
const SCAN_LIMIT: usize = 16;

impl TextSet {
    pub(super) fn new<'a>(entries: impl IntoIterator<Item = &'a str>) -> Self {
        let entries: Vec<Box<str>> = entries.into_iter().map(Box::from).collect();
        if entries.len() <= SCAN_LIMIT {
            TextSet::Few(entries.into_boxed_slice())
        } else {
            TextSet::Many(entries.into_iter().collect())
        }
    }

    pub(super) fn contains(&self, probe: &str) -> bool {
        match self {
            TextSet::Few(entries) => entries.iter().any(|e| **e == *probe),
            TextSet::Many(entries) => entries.contains(probe),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn constraint(
        field: &str,
        operator: &str,
        values: &[&str],
        value: Option<&str>,
    ) -> model::Constraint {
        model::Constraint {
            context_name: field.into(),
            operator: Operator::from(operator.to_owned()),
            values: values.iter().map(|v| v.to_string()).collect(),
            value: value.map(str::to_owned),
            inverted: false,
            case_insensitive: false,
        }
    }

    fn with_property(name: &str, value: &str) -> Context {
        Context {
            properties: BTreeMap::from([(name.to_owned(), value.to_owned())]),
            ..Context::default()
        }
    }

    fn holds(raw: &model::Constraint, context: &Context) -> bool {
        let mut problems = Vec::new();
        let compiled = Constraint::compile(raw, &mut problems);
        compiled.matches(context)
    }

    #[test]
    fn not_in_passes_and_inverted_in_passes_when_the_field_is_missing() {
        let empty = Context::default();
        assert!(holds(&constraint("plan", "NOT_IN", &["pro"], None), &empty));
        let mut inverted_in = constraint("plan", "IN", &["pro"], None);
        inverted_in.inverted = true;
        assert!(holds(&inverted_in, &empty));
    }

    #[test]
    fn case_insensitive_string_operators_handle_non_ascii_text() {
        let mut ends = constraint("city", "STR_ENDS_WITH", &["MÜNCHEN"], None);
        ends.case_insensitive = true;
        assert!(holds(&ends, &with_property("city", "in münchen")));
        assert!(holds(&ends, &with_property("city", "IN MÜNCHEN")));
        assert!(!holds(&ends, &with_property("city", "munchen")));
        let mut starts = constraint("email", "STR_STARTS_WITH", &["Test"], None);
        starts.case_insensitive = true;
        assert!(holds(&starts, &with_property("email", "tEST@example.com")));
    }

    #[test]
    fn numbers_compare_as_floats() {
        let gte = constraint("n", "NUM_GTE", &[], Some("12"));
        assert!(holds(&gte, &with_property("n", "12.0")));
        assert!(!holds(&gte, &with_property("n", "11.99")));
        assert!(!holds(&gte, &with_property("n", "NaN")));
        assert!(!holds(&gte, &with_property("n", "twelve")));
    }

    #[test]
    fn semver_is_strict_and_orders_prereleases() {
        let lt = constraint("version", "SEMVER_LT", &[], Some("2.0.0-rc.1"));
        assert!(holds(&lt, &with_property("version", "2.0.0-beta.9")));
        assert!(!holds(&lt, &with_property("version", "2.0.0")));
        assert!(!holds(&lt, &with_property("version", "v1.0.0")));
        assert!(!holds(&lt, &with_property("version", "1.0")));
    }

    #[test]
    fn unusable_constraints_never_match_even_inverted() {
        for (operator, value) in [
            ("NUM_EQ", "twelve"),
            ("SEMVER_EQ", "v1.0.0"),
            ("REGEX", "(a"),
            ("NOPE", "x"),
        ] {
            let mut raw = constraint("n", operator, &[], Some(value));
            raw.inverted = true;
            let mut problems = Vec::new();
            let compiled = Constraint::compile(&raw, &mut problems);
            assert!(!compiled.matches(&with_property("n", "12")), "{operator}");
            assert_eq!(problems.len(), 1, "{operator}");
        }
    }

    #[test]
    fn cidr_accepts_addresses_and_ranges_of_both_families() {
        let raw = constraint(
            "remoteAddress",
            "IN_CIDR",
            &["10.0.0.0/8", "bad", "2001:db8::1"],
            None,
        );
        let at = |address: &str| Context {
            remote_address: Some(address.into()),
            ..Context::default()
        };
        assert!(holds(&raw, &at("10.1.2.3")));
        assert!(holds(&raw, &at("2001:db8::1")));
        assert!(!holds(&raw, &at("2001:db8::2")));
        assert!(!holds(&raw, &at("not-an-ip")));
    }

    #[test]
    fn long_value_lists_are_hashed() {
        let ids: Vec<String> = (0..100).map(|i| format!("user-{i}")).collect();
        let set = TextSet::new(ids.iter().map(String::as_str));
        assert!(matches!(set, TextSet::Many(_)));
        assert!(set.contains("user-42"));
        assert!(!set.contains("user-100"));
    }
}
