//! Refusals of strangers and SDKs, counted in memory and audited once a minute.
//!
//! A request with an unknown token (an SDK token no environment has, a personal token never
//! issued or since revoked), a request with no credentials where one is needed, and every request
//! an SDK route refuses is answered without a write. If each wrote its own audit row, junk
//! traffic at full speed would become a database write per request: refusing would cost more
//! than answering, and the log would drown. So these refusals are counted here, per minute,
//! action, address and path, with their reasons tallied and the first few kept as samples, and
//! written as one entry per bucket once its minute is over:
//!
//! | column | value |
//! |---|---|
//! | action | `token.rejected` (unknown token) or `access.denied` (no or the wrong credentials) |
//! | actor, outcome | `anonymous`, `denied`; a security event |
//! | target, ip | the path and the client's address |
//! | details | `summary` ("412 refusals from 203.0.113.9 on /api/frontend"), `count`, `minute`, `first`, `last`, `reasons` (reason → count), `samples` (time, reason, user agent) |
//!
//! A background task writes the finished minutes every few seconds, and everything still held
//! when the server stops. Refusals of people and of personal tokens that exist (a viewer trying
//! to deploy) and failed sign-ins stay one entry each: they are few, and each may matter alone.
//!
//! Memory is bounded: a minute holds at most [`MAX_BUCKETS`] buckets; refusals beyond that are
//! counted in one overflow bucket per minute and action (address none, path `*`). Paths are cut
//! at [`MAX_PATH`] bytes and user agents at [`MAX_USER_AGENT`].

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use domain::audit::{Actor, AuditRecord, Origin, Outcome};
use serde_json::json;
use sqlx::PgPool;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Buckets one minute may hold before refusals go to its overflow bucket.
pub const MAX_BUCKETS: usize = 1000;
/// Samples kept per bucket.
pub const SAMPLES: usize = 3;
pub const MAX_PATH: usize = 200;
pub const MAX_USER_AGENT: usize = 200;
/// How often finished minutes are written.
const FLUSH_EVERY: Duration = Duration::from_secs(5);

/// What was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefusalKind {
    /// The request's token is no live token.
    UnknownToken,
    /// The caller lacks the access the route declares.
    Denied,
}

impl RefusalKind {
    fn action(self) -> &'static str {
        match self {
            RefusalKind::UnknownToken => "token.rejected",
            RefusalKind::Denied => "access.denied",
        }
    }
}

/// One refused request.
#[derive(Debug, Clone, Copy)]
pub struct Refusal<'a> {
    pub kind: RefusalKind,
    pub reason: &'static str,
    pub ip: Option<IpAddr>,
    pub path: &'a str,
    pub user_agent: Option<&'a str>,
}

/// The refusals counted so far, by minute; kept current by every request handler and written by
/// one background task. Cloning shares the counts.
#[derive(Clone, Default)]
pub struct Refusals {
    tally: Arc<Mutex<Tally>>,
}

impl Refusals {
    /// Counts refusals and writes them to `pool` until `stop`, then writes what is left. Await
    /// the handle after the last request is answered.
    pub fn start(pool: PgPool, stop: CancellationToken) -> (Refusals, JoinHandle<()>) {
        let refusals = Refusals::default();
        let writer = refusals.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(FLUSH_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => writer.write(&pool, Some(Utc::now())).await,
                }
            }
            writer.write(&pool, None).await;
        });
        (refusals, task)
    }

    /// Counts a refusal now.
    pub fn count(&self, refusal: Refusal<'_>) {
        self.count_at(Utc::now(), refusal);
    }

    pub fn count_at(&self, at: DateTime<Utc>, refusal: Refusal<'_>) {
        self.tally.lock().expect("not poisoned").add(at, refusal);
    }

    /// Writes the minutes that ended before `now` (every minute, with `None`), one audit entry
    /// per bucket.
    pub async fn write(&self, pool: &PgPool, now: Option<DateTime<Utc>>) {
        let buckets = self.tally.lock().expect("not poisoned").take(now);
        for (key, bucket) in buckets {
            let count = bucket.count;
            if let Err(error) = record(&key, bucket).write(pool).await {
                tracing::warn!(%error, count, action = key.action.action(), "could not audit refusals; they are dropped");
            }
        }
    }
}

/// What a bucket counts: one minute, action, address and path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BucketKey {
    pub minute: DateTime<Utc>,
    pub action: RefusalKind,
    pub ip: Option<IpAddr>,
    pub path: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    pub count: u64,
    pub first: DateTime<Utc>,
    pub last: DateTime<Utc>,
    pub reasons: Vec<(&'static str, u64)>,
    pub samples: Vec<Sample>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub at: DateTime<Utc>,
    pub reason: &'static str,
    pub user_agent: Option<String>,
}

/// Buckets by minute, action and address, then by path (so a path is copied only when its
/// bucket is made).
type Minute = HashMap<(RefusalKind, Option<IpAddr>), HashMap<Box<str>, Bucket>>;

/// The counts, as a value that tests drive with their own clock.
#[derive(Default)]
pub struct Tally {
    minutes: HashMap<DateTime<Utc>, (usize, Minute)>,
}

impl Tally {
    pub fn add(&mut self, at: DateTime<Utc>, refusal: Refusal<'_>) {
        let minute = minute_of(at);
        let (buckets, by_address) = self.minutes.entry(minute).or_default();
        let path = cut(refusal.path, MAX_PATH);
        let exists = by_address
            .get(&(refusal.kind, refusal.ip))
            .is_some_and(|paths| paths.contains_key(path));
        let (ip, path) = if exists || *buckets < MAX_BUCKETS {
            (refusal.ip, path)
        } else {
            (None, "*")
        };
        let paths = by_address.entry((refusal.kind, ip)).or_default();
        let bucket = match paths.get_mut(path) {
            Some(bucket) => bucket,
            None => {
                *buckets += 1;
                paths.entry(path.into()).or_insert(Bucket {
                    count: 0,
                    first: at,
                    last: at,
                    reasons: Vec::new(),
                    samples: Vec::new(),
                })
            }
        };
        bucket.count += 1;
        bucket.first = bucket.first.min(at);
        bucket.last = bucket.last.max(at);
        match bucket
            .reasons
            .iter_mut()
            .find(|(r, _)| *r == refusal.reason)
        {
            Some((_, n)) => *n += 1,
            None => bucket.reasons.push((refusal.reason, 1)),
        }
        if bucket.samples.len() < SAMPLES {
            bucket.samples.push(Sample {
                at,
                reason: refusal.reason,
                user_agent: refusal
                    .user_agent
                    .map(|ua| cut(ua, MAX_USER_AGENT).to_string()),
            });
        }
    }

    /// Removes and returns the buckets of the minutes that ended before `now` (of every minute
    /// with `None`), oldest first.
    pub fn take(&mut self, now: Option<DateTime<Utc>>) -> Vec<(BucketKey, Bucket)> {
        let current = now.map(minute_of);
        let mut finished: Vec<DateTime<Utc>> = self
            .minutes
            .keys()
            .copied()
            .filter(|minute| current.is_none_or(|current| *minute < current))
            .collect();
        finished.sort();
        let mut taken = Vec::new();
        for minute in finished {
            let Some((_, by_address)) = self.minutes.remove(&minute) else {
                continue;
            };
            for ((action, ip), paths) in by_address {
                for (path, bucket) in paths {
                    let key = BucketKey {
                        minute,
                        action,
                        ip,
                        path: path.into(),
                    };
                    taken.push((key, bucket));
                }
            }
        }
        taken
    }
}

fn minute_of(at: DateTime<Utc>) -> DateTime<Utc> {
    at.duration_trunc(TimeDelta::minutes(1)).unwrap_or(at)
}

/// At most `max` bytes of `text`, cut at a character boundary.
fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The audit entry of one bucket.
fn record(key: &BucketKey, bucket: Bucket) -> AuditRecord {
    let from = key
        .ip
        .map_or_else(|| "any address".to_string(), |ip| ip.to_string());
    let noun = if bucket.count == 1 {
        "refusal"
    } else {
        "refusals"
    };
    let reasons: serde_json::Map<String, serde_json::Value> = bucket
        .reasons
        .iter()
        .map(|(reason, n)| (reason.to_string(), json!(n)))
        .collect();
    let samples: Vec<serde_json::Value> = bucket
        .samples
        .iter()
        .map(|s| json!({ "at": s.at, "reason": s.reason, "user_agent": s.user_agent }))
        .collect();
    let origin = Origin {
        ip: key.ip.map(|ip| ip.to_string()),
        user_agent: None,
    };
    AuditRecord::new(Actor::anonymous(), key.action.action(), &origin)
        .outcome(Outcome::Denied)
        .security()
        .target(key.path.clone())
        .details(json!({
            "summary": format!("{} {noun} from {from} on {}", bucket.count, key.path),
            "count": bucket.count,
            "minute": key.minute,
            "first": bucket.first,
            "last": bucket.last,
            "reasons": reasons,
            "samples": samples,
        }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minute: u32, second: u32) -> DateTime<Utc> {
        format!("2026-12-03T10:{minute:02}:{second:02}Z")
            .parse()
            .unwrap()
    }

    fn junk(ip: &str, path: &'static str) -> Refusal<'static> {
        Refusal {
            kind: RefusalKind::UnknownToken,
            reason: "unknown SDK token",
            ip: Some(ip.parse().unwrap()),
            path,
            user_agent: Some("curl/8"),
        }
    }

    #[test]
    fn a_minute_of_refusals_becomes_one_counted_bucket_per_address_and_path_once_it_ends() {
        let mut tally = Tally::default();
        for second in 0..60 {
            tally.add(at(0, second), junk("203.0.113.9", "/api/frontend"));
        }
        tally.add(at(0, 30), junk("203.0.113.9", "/ofrep/v1/evaluate/flags"));
        tally.add(at(0, 31), junk("198.51.100.1", "/api/frontend"));
        tally.add(at(1, 0), junk("203.0.113.9", "/api/frontend"));

        assert!(
            tally.take(Some(at(0, 59))).is_empty(),
            "the minute is not over"
        );
        let mut taken = tally.take(Some(at(1, 5)));
        taken.sort_by_key(|(key, bucket)| (key.path.clone(), bucket.count));
        let counts: Vec<(String, u64)> = taken
            .iter()
            .map(|(key, bucket)| (format!("{} {}", key.ip.unwrap(), key.path), bucket.count))
            .collect();
        assert_eq!(
            counts,
            [
                ("198.51.100.1 /api/frontend".to_string(), 1),
                ("203.0.113.9 /api/frontend".to_string(), 60),
                ("203.0.113.9 /ofrep/v1/evaluate/flags".to_string(), 1),
            ]
        );
        let (key, bucket) = &taken[1];
        assert_eq!(key.minute, at(0, 0));
        assert_eq!((bucket.first, bucket.last), (at(0, 0), at(0, 59)));
        assert_eq!(bucket.reasons, [("unknown SDK token", 60)]);
        assert_eq!(bucket.samples.len(), SAMPLES);
        let summary = record(key, bucket.clone()).details["summary"].clone();
        assert_eq!(summary, "60 refusals from 203.0.113.9 on /api/frontend");

        let rest = tally.take(None);
        assert_eq!(rest.len(), 1, "the running minute is written on shutdown");
        assert_eq!(rest[0].0.minute, at(1, 0));
        assert!(tally.take(None).is_empty());
    }

    #[test]
    fn refusals_from_too_many_addresses_share_one_overflow_bucket() {
        let mut tally = Tally::default();
        for n in 0..MAX_BUCKETS + 500 {
            let ip = IpAddr::from([10, 0, (n / 256) as u8, (n % 256) as u8]);
            tally.add(
                at(0, 1),
                Refusal {
                    ip: Some(ip),
                    ..junk("10.0.0.0", "/api/frontend")
                },
            );
        }
        // An address that has a bucket keeps counting in it.
        tally.add(at(0, 2), junk("10.0.0.0", "/api/frontend"));
        let taken = tally.take(None);
        assert_eq!(taken.len(), MAX_BUCKETS + 1);
        let overflow = taken.iter().find(|(key, _)| key.ip.is_none()).unwrap();
        assert_eq!((overflow.0.path.as_str(), overflow.1.count), ("*", 500));
        let first = taken
            .iter()
            .find(|(key, _)| key.ip == Some(IpAddr::from([10, 0, 0, 0])))
            .unwrap();
        assert_eq!(first.1.count, 2);
        let total: u64 = taken.iter().map(|(_, bucket)| bucket.count).sum();
        assert_eq!(total, MAX_BUCKETS as u64 + 501, "every refusal is counted");
    }

    #[test]
    fn long_paths_and_user_agents_are_cut_at_a_character_boundary() {
        let mut tally = Tally::default();
        let path = format!("/api/frontend/features/{}", "é".repeat(200));
        let agent = "ü".repeat(300);
        tally.add(
            at(0, 0),
            Refusal {
                path: &path,
                user_agent: Some(&agent),
                ..junk("203.0.113.9", "")
            },
        );
        let (key, bucket) = tally.take(None).pop().unwrap();
        assert!(key.path.len() <= MAX_PATH && path.starts_with(&key.path));
        let kept = bucket.samples[0].user_agent.as_deref().unwrap();
        assert!(kept.len() <= MAX_USER_AGENT && agent.starts_with(kept));
    }
}
