//! The real `flightdeck` binary: its CLI, the embedded PostgreSQL default, graceful shutdown,
//! and two server processes sharing one database.

use crate::helpers::{SAMPLE, fresh_database, url_of};
use crate::live::wait_for_event;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_flightdeck");

fn flightdeck(args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env_remove("DATABASE_URL")
        .env("FLIGHTDECK_LOG", "warn");
    command
}

/// A data directory the `postgres` user can reach when the tests run as root.
fn data_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("flightdeck-bin-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    dir
}

struct Server {
    child: Child,
    url: String,
    lines: mpsc::Receiver<String>,
}

impl Server {
    fn start(mut command: Command) -> Server {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let first = lines
            .recv_timeout(Duration::from_secs(60))
            .expect("the server printed its address");
        let url = first
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no URL in {first:?}"))
            .to_string();
        Server { child, url, lines }
    }

    fn next_line(&self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_default()
    }

    /// SIGTERM, then wait for a clean exit.
    fn terminate(mut self) -> std::process::ExitStatus {
        Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        for _ in 0..300 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.child.kill().unwrap();
        panic!("the server did not stop within 30 s of SIGTERM");
    }
}

fn run(command: &mut Command) -> (bool, String, String) {
    let out = command.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

#[test]
fn check_definition_prints_each_problem_like_a_compiler() {
    let dir = data_dir();
    let good = dir.path().join("good.yml");
    std::fs::write(&good, SAMPLE).unwrap();
    let (ok, stdout, _) = run(&mut flightdeck(&[
        "check-definition",
        good.to_str().unwrap(),
    ]));
    assert!(
        ok && stdout.contains("ok: project `studybuddy`, 4 phases"),
        "{stdout}"
    );

    let bad = dir.path().join("bad.yml");
    std::fs::write(
        &bad,
        SAMPLE.replacen("timezone: Europe/Berlin", "timezone: Mars/Olympus_Mons", 1),
    )
    .unwrap();
    let (ok, _, stderr) = run(&mut flightdeck(&[
        "check-definition",
        bad.to_str().unwrap(),
    ]));
    assert!(!ok);
    let line = SAMPLE
        .lines()
        .position(|l| l.contains("timezone: Europe/Berlin"))
        .unwrap()
        + 1;
    assert!(stderr.contains(&format!("bad.yml:{line}:")), "{stderr}");
    assert!(
        stderr.contains("Mars/Olympus_Mons") && stderr.contains('^'),
        "{stderr}"
    );
}

#[test]
fn the_embedded_default_keeps_data_across_restarts_and_stops_on_sigterm() {
    let dir = data_dir();
    let data = dir.path().to_str().unwrap();
    let sample = dir.path().join("flightdeck.yml");
    std::fs::write(&sample, SAMPLE).unwrap();
    let serve = |extra: &[&str]| {
        let mut args = vec!["serve", "--addr", "127.0.0.1:0", "--data-dir", data];
        args.extend_from_slice(extra);
        Server::start(flightdeck(&args))
    };

    let first = serve(&["--project", sample.to_str().unwrap()]);
    assert!(
        first.next_line().contains("/setup/fdl_"),
        "a setup link is printed while nobody can sign in"
    );
    let ready = reqwest::blocking::get(format!("{}/readyz", first.url)).unwrap();
    assert_eq!(ready.status(), 200);
    assert!(first.terminate().success());
    assert!(
        !Path::new(data)
            .join("postgres/data/postmaster.pid")
            .exists(),
        "the cluster was stopped"
    );

    let (ok, stdout, stderr) =
        run(
            flightdeck(&["user", "add", "ada", "--role", "admin", "--data-dir", data])
                .stdin(Stdio::null()),
        );
    assert!(ok, "{stderr}");
    let password = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Their password: "))
        .unwrap()
        .to_string();

    let second = serve(&[]);
    assert!(
        second.next_line().contains("Sign in at"),
        "no setup link once someone exists"
    );
    let client = reqwest::blocking::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap();
    let login = client
        .post(format!("{}/fn/login", second.url))
        .form(&[("username", "ada"), ("password", &password)])
        .send()
        .unwrap();
    assert!(login.status().is_success(), "{}", login.status());
    let projects: serde_json::Value = client
        .get(format!("{}/api/v1/projects", second.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        projects[0]["key"], "studybuddy",
        "the project loaded by the first run is still there"
    );
    assert!(second.terminate().success());
}

#[test]
fn a_stale_postmaster_pid_after_a_crash_does_not_stop_the_next_start() {
    let dir = data_dir();
    let data = dir.path().to_str().unwrap();
    let server = Server::start(flightdeck(&[
        "serve",
        "--addr",
        "127.0.0.1:0",
        "--data-dir",
        data,
    ]));
    let pid_file = dir.path().join("postgres/data/postmaster.pid");
    let postmaster: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // A crash: the server and its database die without cleaning up.
    let mut child = server.child;
    child.kill().unwrap();
    child.wait().unwrap();
    Command::new("kill")
        .args(["-KILL", &postmaster.to_string()])
        .status()
        .unwrap();
    // Wait for the postmaster to be dead (gone, or a zombie nobody reaped yet), not for a
    // fixed time.
    let alive = || {
        std::fs::read_to_string(format!("/proc/{postmaster}/stat")).is_ok_and(|stat| {
            stat.rsplit_once(") ")
                .is_some_and(|(_, rest)| !rest.starts_with('Z'))
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while alive() {
        assert!(
            std::time::Instant::now() < deadline,
            "the postmaster outlived kill -9"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(pid_file.exists(), "the crash left postmaster.pid behind");

    let again = Server::start(flightdeck(&[
        "serve",
        "--addr",
        "127.0.0.1:0",
        "--data-dir",
        data,
    ]));
    let ready = reqwest::blocking::get(format!("{}/readyz", again.url)).unwrap();
    assert_eq!(ready.status(), 200);
    assert!(again.terminate().success());
}

#[tokio::test(flavor = "multi_thread")]
async fn two_server_processes_on_one_database_share_live_updates() {
    let database = url_of(&fresh_database().await);
    let with_db = |args: &[&str]| {
        let mut command = flightdeck(args);
        command.env("DATABASE_URL", &database);
        command
    };
    let (ok, stdout, stderr) = run(&mut with_db(&[
        "token",
        "create",
        "ci",
        "--scope",
        "read,definition:write",
    ]));
    assert!(ok, "{stderr}");
    let token = stdout.lines().last().unwrap().trim().to_string();
    let dir = data_dir();
    let sample = dir.path().join("flightdeck.yml");
    std::fs::write(&sample, SAMPLE).unwrap();

    let a = Server::start(with_db(&[
        "serve",
        "--addr",
        "127.0.0.1:0",
        "--project",
        sample.to_str().unwrap(),
    ]));
    let b = Server::start(with_db(&["serve", "--addr", "127.0.0.1:0"]));
    let client = reqwest::Client::new();
    let mut stream = client
        .get(format!("{}/api/v1/events", b.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    wait_for_event(&mut stream, "ready", Duration::from_secs(5)).await;
    let changed = SAMPLE.replacen("name: StudyBuddy", "name: StudyBuddy Replicated", 1);
    let put = client
        .put(format!("{}/api/v1/projects/studybuddy/definition", a.url))
        .bearer_auth(&token)
        .body(changed)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    wait_for_event(&mut stream, "change", Duration::from_secs(1)).await;
    let overview: serde_json::Value = client
        .get(format!("{}/api/v1/projects/studybuddy/overview", b.url))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(overview["project"]["name"], "StudyBuddy Replicated");
    drop(stream);
    assert!(a.terminate().success());
    assert!(b.terminate().success());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_remote_runner_killed_mid_job_loses_its_lease_and_the_job_runs_again_elsewhere() {
    let database = url_of(&fresh_database().await);
    let with_db = |args: &[&str]| {
        let mut command = flightdeck(args);
        command.env("DATABASE_URL", &database);
        command
    };
    let dir = data_dir();
    // The first attempt's step writes its process group's id, so the test can stop what the
    // killed runner leaves behind (by id, not by name).
    let step_group = dir.path().join("first-attempt.pgid");
    let pipeline = format!(
        "project: {{ name: Gpu, key: gpu }}\nphases:\n  ci:\n    title: CI\n    stages:\n      train:\n        title: Train\n        jobs:\n          model:\n            runs_on: [gpu]\n            retries: 1\n            steps: ['if [ \"$FLIGHTDECK_ATTEMPT\" = 1 ]; then echo $$ > {}; echo first; sleep 120; else echo second; fi']\n",
        step_group.display()
    );
    let pipeline = pipeline.as_str();
    let (repo, _) = crate::runs::repository(pipeline, &[]);
    let definition = repo.join("flightdeck.yml");
    let server = Server::start(with_db(&[
        "serve",
        "--addr",
        "127.0.0.1:0",
        "--no-local-runner",
        "--data-dir",
        dir.path().to_str().unwrap(),
        "--project",
        definition.to_str().unwrap(),
    ]));
    let (ok, _, stderr) = run(&mut with_db(&[
        "project",
        "set-repository",
        "gpu",
        repo.to_str().unwrap(),
    ]));
    assert!(ok, "{stderr}");
    let (_, stdout, _) = run(&mut with_db(&[
        "token",
        "create",
        "gpu-runner",
        "--scope",
        "runner",
    ]));
    let runner_token = stdout.lines().last().unwrap().trim().to_string();
    let (_, stdout, _) = run(&mut with_db(&[
        "token",
        "create",
        "ci",
        "--scope",
        "runs:write,read",
    ]));
    let ci_token = stdout.lines().last().unwrap().trim().to_string();
    let start_runner = |name: &str| {
        flightdeck(&[
            "runner",
            "--url",
            &server.url,
            "--labels",
            "linux,gpu",
            "--name",
            name,
            "--data-dir",
            dir.path().to_str().unwrap(),
        ])
        .env("FLIGHTDECK_RUNNER_TOKEN", &runner_token)
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
    };
    let mut first = start_runner("doomed");
    let client = reqwest::Client::new();
    let started = client
        .post(format!("{}/api/v1/projects/gpu/runs", server.url))
        .bearer_auth(&ci_token)
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 201);
    let job = |client: reqwest::Client| {
        let url = format!("{}/api/v1/projects/gpu/runs/1/jobs/model", server.url);
        let token = ci_token.clone();
        async move {
            client
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while job(client.clone()).await["job"]["state"] != "running" {
        assert!(
            std::time::Instant::now() < deadline,
            "the gpu job never started"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // kill -9: no goodbye, no finish call; only the lease can tell.
    first.kill().unwrap();
    first.wait().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let detail = job(client.clone()).await;
        if detail["job"]["state"] == "queued" {
            let reason = detail["job"]["reason"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            assert!(
                reason.contains("the runner of attempt 1 (doomed) stopped answering"),
                "{reason}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the job was never taken back: {detail}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let mut second = start_runner("survivor");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let detail = job(client.clone()).await;
        if detail["job"]["state"] == "succeeded" {
            assert_eq!(detail["job"]["attempt"], 2);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the retry never finished: {detail}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    if let Ok(group) = std::fs::read_to_string(&step_group) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", group.trim())])
            .status();
    }
    second.kill().unwrap();
    second.wait().unwrap();
    assert!(server.terminate().success());
}

#[test]
fn setup_link_prints_a_new_link_while_nobody_can_sign_in_and_one_off_commands_are_quiet() {
    let dir = data_dir();
    let data = dir.path().to_str().unwrap();
    // Without FLIGHTDECK_LOG: the embedded database's start and stop are not printed.
    let quiet = |args: &[&str]| {
        let mut command = Command::new(BIN);
        command.args(args).args(["--data-dir", data]);
        command
            .env_remove("DATABASE_URL")
            .env_remove("FLIGHTDECK_LOG");
        command
    };
    let (ok, stdout, stderr) = run(&mut quiet(&[
        "setup-link",
        "--public-url",
        "https://deploy.example.com/",
    ]));
    assert!(ok, "{stderr}");
    assert!(
        stdout
            .trim()
            .starts_with("https://deploy.example.com/setup/fdl_"),
        "{stdout}"
    );
    assert_eq!(
        stderr, "",
        "a one-off command prints nothing but its answer"
    );
    let mut add = quiet(&["user", "add", "ada", "--role", "admin", "--password-stdin"]);
    add.stdin(std::process::Stdio::piped());
    let mut child = add.stdout(std::process::Stdio::null()).spawn().unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), PASSWORD_FOR_CLI.as_bytes()).unwrap();
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    let (ok, _, stderr) = run(&mut quiet(&["setup-link"]));
    assert!(!ok);
    assert!(stderr.contains("people can sign in already"), "{stderr}");
}

const PASSWORD_FOR_CLI: &str = "correct horse battery staple";
