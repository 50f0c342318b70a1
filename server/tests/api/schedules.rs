//! Schedules on real servers: a simulated week on the test clock with two server processes on
//! one database fires every tick exactly once, across Europe/Berlin's change to summer time, and
//! promotes the right releases; ticks missed while every server was down follow the policy
//! (the newest fires late with an alert, the older ones are recorded as missed).

use crate::helpers::TestApp;
use crate::runs::repository;
use chrono::{DateTime, Duration as Span, NaiveDate, TimeZone, Utc};
use chrono_tz::Europe::Berlin;
use domain::audit::{Actor, Origin};
use domain::clock::Clock;
use domain::deployment::decide::{Decision, decide};
use domain::environment::Acting;
use domain::role::Role;
use domain::run::store::{Runs, Trigger};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const WEEK: &str = r#"
project:
  name: Week
  key: week
triggers:
  push:
    branches: [main]
environments:
  development: {}
  staging: {}
  production:
    protection:
      required_approvals: 1
      allowed_roles: [release-manager]
phases:
  ci:
    title: CI
    stages:
      checks:
        jobs:
          check:
            steps:
              - echo checked
      deploy-development:
        deploy:
          environment: development
  staging:
    title: Staging
    stages:
      deploy-staging:
        deploy:
          environment: staging
      qa-approval:
        gate:
          role: qa
  production:
    title: Production
    stages:
      deploy-production:
        deploy:
          environment: production
schedules:
  development:
    cron: "*/30 8-18 * * MON-FRI"
    timezone: Europe/Berlin
    action: promote
    environment: development
  staging:
    cron: "0 18 * * *"
    timezone: Europe/Berlin
    action: promote
    environment: staging
  production:
    cron: "0 2 * * SUN"
    timezone: Europe/Berlin
    action: promote
    environment: production
  nightly:
    cron: "0 3 * * *"
    timezone: Europe/Berlin
    action: run
    branch: main
"#;

/// A Berlin wall-clock time (one that exists and is not ambiguous) in UTC.
fn berlin(day: u32, hour: u32, minute: u32) -> DateTime<Utc> {
    Berlin
        .from_local_datetime(
            &NaiveDate::from_ymd_opt(2027, 3, day)
                .unwrap()
                .and_hms_opt(hour, minute, 0)
                .unwrap(),
        )
        .single()
        .unwrap()
        .with_timezone(&Utc)
}

fn set_clock(app: &TestApp, at: DateTime<Utc>) {
    app.clock.advance(at - app.clock.now());
}

async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Loads WEEK as the project's definition, with a repository for its runs.
async fn load_week(app: &TestApp) {
    let (dir, _) = repository(WEEK, &[]);
    domain::project::load_definition(
        &app.pool,
        domain::project::DefinitionUpload {
            source: WEEK,
            origin_label: "test",
            expected_project: None,
        },
        &Acting::Operator {
            name: "test".into(),
        },
        Actor::system(),
        &Origin::default(),
    )
    .await
    .unwrap();
    sqlx::query("update project set repository = $1")
        .bind(dir.to_str().unwrap())
        .execute(&app.pool)
        .await
        .unwrap();
}

/// A release as a green run makes it (the run itself is started, not run: no runner here).
async fn release(pool: &sqlx::PgPool, number: i64, version: &str) {
    let run = Runs::new(pool.clone())
        .start(
            "week",
            "main",
            None,
            Trigger::Manual,
            Actor::system(),
            &Origin::default(),
            None,
        )
        .await
        .unwrap();
    sqlx::query(
        "insert into release (project_id, run_id, number, version, commit_sha, branch, commit_author,
                              commit_message, created_at)
         select project_id, run_id, $2, $3, commit_sha, 'main', 'Tess Tester', 'work', now()
         from run where run_id = $1",
    )
    .bind(run.run_id)
    .bind(number)
    .bind(version)
    .execute(pool)
    .await
    .unwrap();
}

/// (schedule, due_at, outcome, detail) of every tick, in order.
async fn ticks(app: &TestApp) -> Vec<(String, DateTime<Utc>, String, Option<String>)> {
    sqlx::query_as(
        "select schedule_name, due_at, outcome, detail from schedule_tick order by due_at, schedule_name",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap()
}

/// Ticks with an outcome (not only claimed) due at or before `at`.
async fn settled(app: &TestApp, at: DateTime<Utc>) -> i64 {
    sqlx::query_scalar(
        "select count(*) from schedule_tick where due_at <= $1 and outcome <> 'claimed'",
    )
    .bind(at)
    .fetch_one(&app.pool)
    .await
    .unwrap()
}

async fn deployments_under_way(app: &TestApp, environment: &str) -> i64 {
    sqlx::query_scalar(
        "select count(*) from deployment d join environment e using (environment_id)
         where e.name = $1 and d.state in ('queued', 'running')",
    )
    .bind(environment)
    .fetch_one(&app.pool)
    .await
    .unwrap()
}

/// The releases schedules deployed into each environment, in order.
async fn scheduled_deployments(app: &TestApp) -> BTreeMap<String, Vec<String>> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "select e.name, r.version from deployment d join environment e using (environment_id)
         join release r on r.release_id = d.release_id
         where d.trigger = 'schedule' order by d.number",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (environment, version) in rows {
        out.entry(environment).or_default().push(version);
    }
    out
}

/// Every tick the week should fire, written from the calendar rather than from the cron code.
fn expected_week() -> Vec<(String, DateTime<Utc>)> {
    let mut expected = Vec::new();
    for day in 22..=26 {
        for hour in 8..=18 {
            for minute in [0, 30] {
                expected.push(("development".to_string(), berlin(day, hour, minute)));
            }
        }
    }
    for day in 22..=28 {
        expected.push(("staging".to_string(), berlin(day, 18, 0)));
        expected.push(("nightly".to_string(), berlin(day, 3, 0)));
    }
    // 02:00 on Sunday 28 March does not exist in Berlin (02:00 CET becomes 03:00 CEST): the
    // production schedule fires at the first instant after the gap, 03:00 CEST = 01:00 UTC.
    expected.push((
        "production".to_string(),
        Utc.with_ymd_and_hms(2027, 3, 28, 1, 0, 0).unwrap(),
    ));
    expected.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
    expected
}

#[tokio::test]
async fn a_week_on_two_servers_fires_every_tick_once_across_the_change_to_summer_time() {
    let start = berlin(22, 0, 0);
    let end = berlin(29, 0, 0);
    let one = TestApp::spawn_empty().await;
    set_clock(&one, start);
    let two = TestApp::spawn_on(one.options.clone()).await;
    set_clock(&two, start);
    load_week(&one).await;
    one.add_user("qa1", Role::Qa).await;
    release(&one.pool, 1, "2027.03.22-1").await;
    // Ticks count from when a server first saw each schedule: Monday 00:00.
    until("the servers saw the schedules", || async {
        sqlx::query_scalar::<_, i64>("select count(*) from schedule_since")
            .fetch_one(&one.pool)
            .await
            .unwrap()
            == 4
    })
    .await;
    let expected = expected_week();

    let mut at = start;
    while at < end {
        at += Span::minutes(10);
        set_clock(&one, at);
        set_clock(&two, at);
        let due = expected.iter().filter(|(_, t)| *t <= at).count() as i64;
        until(
            &format!("the {due} ticks due by {at} are recorded"),
            || async { settled(&one, at).await == due },
        )
        .await;
        until("development's deployment finished", || async {
            deployments_under_way(&one, "development").await == 0
        })
        .await;
        // Tuesday 12:10: a second release; Saturday: a third (no development ticks at weekends).
        if at == berlin(23, 12, 10) {
            release(&one.pool, 2, "2027.03.22-2").await;
        }
        if at == berlin(27, 10, 0) {
            release(&one.pool, 3, "2027.03.22-3").await;
        }
        // Wednesday noon: QA approves the release staging got on Monday.
        if at == berlin(24, 12, 0) {
            let number: i64 = sqlx::query_scalar(
                "select d.number from deployment d join environment e using (environment_id)
                 where e.name = 'staging' and d.state = 'waiting'",
            )
            .fetch_one(&one.pool)
            .await
            .unwrap();
            decide(
                &one.pool,
                "week",
                number,
                "qa-approval",
                Decision::Approve { comment: None },
                &Acting::Person {
                    name: "qa1".into(),
                    role: Role::Qa,
                },
                &Actor::system(),
                &Origin::default(),
                at,
            )
            .await
            .unwrap();
            until("staging's deployment succeeded", || async {
                sqlx::query_scalar::<_, String>("select state from deployment where number = $1")
                    .bind(number)
                    .fetch_one(&one.pool)
                    .await
                    .unwrap()
                    == "succeeded"
            })
            .await;
        }
    }

    let fired = ticks(&one).await;
    let fired_at: Vec<(String, DateTime<Utc>)> =
        fired.iter().map(|(s, t, _, _)| (s.clone(), *t)).collect();
    assert_eq!(fired_at, expected, "the ticks fired, each once");
    let count = |name: &str| fired.iter().filter(|t| t.0 == name).count();
    assert_eq!(
        (
            count("development"),
            count("staging"),
            count("production"),
            count("nightly")
        ),
        (110, 7, 1, 7)
    );

    // The right releases, each promotion once (idempotency keys unique per environment).
    let deployed = scheduled_deployments(&one).await;
    assert_eq!(deployed["development"], ["2027.03.22-1", "2027.03.22-2"]);
    assert_eq!(deployed["staging"], ["2027.03.22-1", "2027.03.22-2"]);
    assert_eq!(deployed["production"], ["2027.03.22-1"]);
    let runs: i64 = sqlx::query_scalar("select count(*) from run where trigger = 'schedule'")
        .fetch_one(&one.pool)
        .await
        .unwrap();
    assert_eq!(runs, 7, "one run per nightly tick");

    // What each tick said.
    let outcome = |name: &str, at: DateTime<Utc>| {
        fired
            .iter()
            .find(|t| t.0 == name && t.1 == at)
            .map(|t| (t.2.clone(), t.3.clone().unwrap_or_default()))
            .unwrap()
    };
    let (o, d) = outcome("development", berlin(22, 8, 0));
    assert_eq!(o, "started");
    assert!(d.ends_with("of 2027.03.22-1 to development"), "{d}");
    assert_eq!(
        outcome("development", berlin(22, 8, 30)),
        (
            "nothing-to-do".into(),
            "2027.03.22-1 already runs in development".into()
        )
    );
    assert_eq!(outcome("development", berlin(23, 12, 30)).0, "started");
    let (o, d) = outcome("staging", berlin(23, 18, 0));
    assert_eq!(o, "nothing-to-do");
    assert!(
        d.contains("of 2027.03.22-1 is still under way in staging"),
        "a staging deployment waiting for QA makes the next tick do nothing: {d}"
    );
    let (o, d) = outcome(
        "production",
        Utc.with_ymd_and_hms(2027, 3, 28, 1, 0, 0).unwrap(),
    );
    assert_eq!(o, "started");
    assert!(d.ends_with("of 2027.03.22-1 to production"), "{d}");
    assert!(
        fired
            .iter()
            .filter(|t| t.0 == "nightly")
            .all(|t| t.2 == "started" && t.3.as_deref().unwrap().starts_with("run #"))
    );
    let (alerted, late): (i64, i64) = sqlx::query_as(
        "select count(*) filter (where alerted), count(*) filter (where lateness_ms > 0) from schedule_tick",
    )
    .fetch_one(&one.pool)
    .await
    .unwrap();
    assert_eq!((alerted, late), (0, 0), "every tick fired at its instant");
    let replicas: i64 =
        sqlx::query_scalar("select count(*) from schedule_tick where fired_by is null")
            .fetch_one(&one.pool)
            .await
            .unwrap();
    assert_eq!(replicas, 0, "every tick names the server that fired it");
}

#[tokio::test]
async fn ticks_missed_while_every_server_was_down_fire_once_late_with_an_alert() {
    let mut one = TestApp::spawn_empty().await;
    set_clock(&one, berlin(22, 7, 0));
    let mut two = TestApp::spawn_on(one.options.clone()).await;
    set_clock(&two, berlin(22, 7, 0));
    load_week(&one).await;
    release(&one.pool, 1, "2027.03.22-1").await;
    // Both servers see the schedules, then fire Monday 08:00.
    until("both servers saw the schedules", || async {
        sqlx::query_scalar::<_, i64>("select count(*) from schedule_since")
            .fetch_one(&one.pool)
            .await
            .unwrap()
            == 4
    })
    .await;
    // Monday 08:00 fires on time (the clock stops at the instant).
    set_clock(&one, berlin(22, 8, 0));
    set_clock(&two, berlin(22, 8, 0));
    until("Monday 08:00 fired", || async {
        settled(&one, berlin(22, 8, 0)).await == 1
    })
    .await;
    until("development's deployment finished", || async {
        deployments_under_way(&one, "development").await == 0
    })
    .await;
    one.shut_down().await;
    two.shut_down().await;

    // Three days later one server starts.
    let three = TestApp::spawn_on(one.options.clone()).await;
    set_clock(&three, berlin(25, 8, 5));
    let fired = |schedule: &'static str| {
        let pool = three.pool.clone();
        async move {
            sqlx::query_as::<_, (DateTime<Utc>, String, bool)>(
                "select due_at, outcome, alerted from schedule_tick
                 where schedule_name = $1 and outcome <> 'missed' order by due_at",
            )
            .bind(schedule)
            .fetch_all(&pool)
            .await
            .unwrap()
        }
    };
    // Four ticks have fired by now (Monday's on time, three late), each with its outcome.
    until("the late ticks are fired and recorded", || async {
        sqlx::query_scalar::<_, i64>(
            "select count(*) from schedule_tick where outcome not in ('missed', 'claimed')",
        )
        .fetch_one(&three.pool)
        .await
        .unwrap()
            == 4
    })
    .await;
    let missed = |schedule: &'static str| {
        let pool = three.pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "select count(*) from schedule_tick where schedule_name = $1 and outcome = 'missed'",
            )
            .bind(schedule)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    // Development: Monday 08:00 on time; Thursday 08:00 late (R1 runs there already); the 65
    // ticks between are missed.
    let development = fired("development").await;
    assert_eq!(development.len(), 2);
    assert!(!development[0].2, "Monday 08:00 fired on time: no alert");
    assert_eq!(development[1].0, berlin(25, 8, 0));
    assert_eq!(development[1].1, "nothing-to-do");
    assert!(development[1].2, "fired 5 minutes late: alerted");
    assert_eq!(missed("development").await, 21 + 22 + 22);
    // Staging: Wednesday 18:00 fires, 14 hours late; Monday's and Tuesday's are missed.
    let staging = fired("staging").await;
    assert_eq!(staging.len(), 1);
    assert_eq!(staging[0].0, berlin(24, 18, 0));
    assert_eq!(staging[0].1, "started");
    assert_eq!(missed("staging").await, 2);
    // Nightly: Thursday 03:00 fires; Tuesday's and Wednesday's are missed (Monday's came before
    // the schedule was first seen).
    let nightly = fired("nightly").await;
    assert_eq!(nightly.len(), 1);
    assert_eq!(nightly[0].0, berlin(25, 3, 0));
    assert_eq!(missed("nightly").await, 2);
    assert!(fired("production").await.is_empty());
    assert_eq!(three.audit_count("schedule.late").await, 3);
    assert_eq!(three.audit_count("schedule.failed").await, 0);

    // The overview shows it.
    let overview = domain::project::overview(&three.pool, Some("week"))
        .await
        .unwrap()
        .unwrap()
        .project
        .unwrap();
    let card = |name: &str| {
        overview
            .schedules
            .iter()
            .find(|s| s.name == name)
            .unwrap()
            .clone()
    };
    let staging = card("staging").last_tick.unwrap();
    assert!(staging.alerted);
    assert_eq!(staging.lateness_seconds, 14 * 3600 + 5 * 60);
    assert_eq!(staging.missed_before, 2);
    assert!(
        staging.describe().contains(
            "(fired 14 h 5 min late; 2 earlier ticks missed while every server was down)"
        ),
        "{}",
        staging.describe()
    );
    assert_eq!(
        card("production").would,
        "nothing eligible: no release has passed every stage of staging yet"
    );
    assert_eq!(card("nightly").would, "starts a run of main");
    assert_eq!(card("production").next_fires.len(), 5);
}

/// Bench (run by hand: `cargo test -p flightdeck --test api schedule_tick_bench -- --ignored
/// --nocapture`): a server on the system clock with a schedule every minute; from each tick's
/// instant until its deployment row exists (read by polling every 2 ms). Goal ≤ 1 s.
#[tokio::test]
#[ignore = "a bench: waits for real minutes"]
async fn schedule_tick_bench() {
    let bench = WEEK.replace("cron: \"*/30 8-18 * * MON-FRI\"", "cron: \"* * * * *\"");
    let options = crate::helpers::fresh_database().await;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .connect_with(options.clone())
        .await
        .unwrap();
    let store = domain::run::artifacts::ArtifactStore::Local(crate::helpers::artifacts());
    let data_dir = tempfile::Builder::new()
        .prefix("flightdeck-bench-")
        .tempdir()
        .unwrap()
        .keep();
    let portal = domain::portal::Portal::new(pool.clone(), false, store, Default::default());
    let instance = server::instance::Instance::start(server::instance::InstanceConfig {
        listener: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        public_url: None,
        site: server::http::assets::Site::unchecked(std::path::Path::new("target/site")),
        portal,
        webhook_secret: None,
        local_runner: None,
        world: Default::default(),
        data_dir,
    })
    .await
    .unwrap();
    let (dir, _) = repository(&bench, &[]);
    domain::project::load_definition(
        &pool,
        domain::project::DefinitionUpload {
            source: &bench,
            origin_label: "bench",
            expected_project: None,
        },
        &Acting::Operator {
            name: "bench".into(),
        },
        Actor::system(),
        &Origin::default(),
    )
    .await
    .unwrap();
    sqlx::query("update project set repository = $1")
        .bind(dir.to_str().unwrap())
        .execute(&pool)
        .await
        .unwrap();
    let samples: usize = std::env::var("BENCH_SAMPLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let mut figures = Vec::new();
    for n in 1..=samples as i64 {
        release(&pool, n, &format!("bench-{n}")).await;
        let now = Utc::now();
        let due = now - Span::seconds(i64::from(now.timestamp() as i32 % 60)) + Span::seconds(60)
            - Span::nanoseconds(i64::from(now.timestamp_subsec_nanos()));
        loop {
            let made: i64 = sqlx::query_scalar(
                "select count(*) from deployment d join environment e using (environment_id)
                 where e.name = 'development' and d.trigger = 'schedule'",
            )
            .fetch_one(&pool)
            .await
            .unwrap();
            if made == n {
                break;
            }
            assert!(
                Utc::now() < due + Span::seconds(30),
                "no deployment for the tick at {due}"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let took = Utc::now() - due;
        println!(
            "schedule tick {due} → deployment #{n} exists after {} ms",
            took.num_milliseconds()
        );
        figures.push(took.num_milliseconds());
    }
    figures.sort();
    println!(
        "schedule tick → promotion started: median {} ms, max {} ms over {} ticks (goal ≤ 1000 ms)",
        figures[figures.len() / 2],
        figures[figures.len() - 1],
        figures.len()
    );
    instance.stop(Duration::from_secs(5)).await;
}
