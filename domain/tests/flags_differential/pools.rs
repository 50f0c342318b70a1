//! The values generated definitions and contexts are made of. Definitions draw their operands
//! from the same pools as contexts draw their values, so that constraints, lists and overrides
//! hit as often as they miss.

/// Every operator Unleash has.
pub const OPERATORS: [&str; 19] = [
    "IN",
    "NOT_IN",
    "STR_STARTS_WITH",
    "STR_ENDS_WITH",
    "STR_CONTAINS",
    "NUM_EQ",
    "NUM_GT",
    "NUM_GTE",
    "NUM_LT",
    "NUM_LTE",
    "DATE_AFTER",
    "DATE_BEFORE",
    "SEMVER_EQ",
    "SEMVER_GT",
    "SEMVER_GTE",
    "SEMVER_LT",
    "SEMVER_LTE",
    "REGEX",
    "IN_CIDR",
];

/// Every built-in strategy, and a custom one (which neither evaluator can run).
pub const STRATEGIES: [&str; 9] = [
    "default",
    "userWithId",
    "flexibleRollout",
    "gradualRolloutUserId",
    "gradualRolloutSessionId",
    "gradualRolloutRandom",
    "remoteAddress",
    "applicationHostname",
    "myCustomStrategy",
];

pub const LISTED_USERS: &[&str] = &["7", "42", "alice", "Bob", "user-3", ""];
pub const SESSIONS: &[&str] = &["s-1", "s-2", "s-3"];
pub const ADDRESSES: &[&str] = &[
    "10.0.0.1",
    "10.20.30.40",
    "192.168.1.7",
    "172.16.5.4",
    "2001:db8::1",
    "::1",
    "127.0.0.1",
    "not-an-ip",
];
pub const NETWORKS: &[&str] = &[
    "10.0.0.0/8",
    "192.168.0.0/16",
    "2001:db8::/32",
    "172.16.5.4",
    "127.0.0.1/32",
    "0.0.0.0/0",
    "::1",
];
pub const ENVIRONMENTS: &[&str] = &["production", "staging", "development"];
pub const APPS: &[&str] = &["web", "ios", "android"];
pub const TIMES: &[&str] = &[
    "2019-06-01T00:00:00Z",
    "2024-03-01T12:30:00Z",
    "2031-01-01T00:00:00Z",
];
pub const DATES: &[&str] = &[
    "2020-06-01T00:00:00Z",
    "2024-03-01T12:30:00.000Z",
    "2030-01-01T00:00:00+01:00",
    "2099-01-01T00:00:00Z",
];
pub const VERSIONS: &[&str] = &["1.2.3", "2.0.0-beta.1", "2.0.0-rc.1", "2.0.0", "10.0.0"];
pub const NUMBERS: &[&str] = &["18", "7", "42.5", "-3", "0", "100", "1e2"];
/// Regular expressions, with the field each is meant for (so that they match as often as not).
pub const PATTERNS: &[(&str, &str)] = &[
    ("userId", "^user-[0-9]+$"),
    ("userId", "[0-9]{2}"),
    ("email", "example\\.com$"),
    ("plan", "^pro$"),
    ("plan", "^$"),
    ("city", "m.nchen"),
];
pub const STICKINESS: &[&str] = &[
    "default",
    "userId",
    "sessionId",
    "random",
    "tenant",
    "plan",
    "remoteAddress",
    "environment",
    "appName",
];

/// The properties a context may have, with the values they take.
pub const PROPERTIES: &[(&str, &[&str])] = &[
    ("plan", &["free", "pro", "Pro", "team", "enterprise", ""]),
    ("tenant", &["t1", "t2", "t3", ""]),
    (
        "email",
        &[
            "alice@example.com",
            "BOB@EXAMPLE.COM",
            "carol@test.io",
            "dörte@münchen.de",
            "",
        ],
    ),
    (
        "city",
        &["München", "MÜNCHEN", "berlin", "Zürich", "İstanbul"],
    ),
    (
        "age",
        &["7", "18", "18.0", "42", "-3", "1e2", "abc", "NaN", ""],
    ),
    (
        "version",
        &[
            "1.2.3",
            "2.0.0-beta.1",
            "2.0.0-rc.1",
            "2.0.0",
            "2.0.0+build.5",
            "10.0.0",
            "v1.0.0",
            "1.0",
        ],
    ),
    (
        "signup",
        &[
            "2020-01-01T00:00:00Z",
            "2025-06-01T12:00:00.000Z",
            "2035-01-01T00:00:00+02:00",
            "yesterday",
        ],
    ),
    ("ip", ADDRESSES),
];

/// What the STR_* operators look for, by field.
pub const NEEDLES: &[(&str, &[&str])] = &[
    (
        "email",
        &[
            "alice",
            "@example.com",
            "EXAMPLE",
            "@test.io",
            "dörte",
            "MÜNCHEN.DE",
            "",
        ],
    ),
    (
        "city",
        &["mün", "MÜN", "berlin", "BER", "zürich", "i̇stanbul", "İst"],
    ),
    ("plan", &["pro", "PRO", "te", "free"]),
    ("userId", &["user-1", "7", "ali"]),
    ("appName", &["we", "IOS", "droid"]),
];

/// The values a context field takes.
pub fn field_values(field: &str) -> &'static [&'static str] {
    match field {
        "userId" => LISTED_USERS,
        "sessionId" => SESSIONS,
        "environment" => ENVIRONMENTS,
        "appName" => APPS,
        "remoteAddress" => ADDRESSES,
        "currentTime" => &["2019-06-01T00:00:00.000Z", "2024-03-01T12:30:00.000Z"],
        other => PROPERTIES
            .iter()
            .find(|(name, _)| *name == other)
            .map_or(&[], |(_, values)| values),
    }
}
