//! A typed client for the runner protocol (see [`domain::run::protocol`]).
//!
//! Every call retries, with capped exponential backoff, while the server cannot be reached or
//! answers 502/503/504: a server that restarts, or a proxy in front of one that does, costs a
//! pause and not a job. Each call has a retry budget (below); past it the last error is returned.
//! A retried request may have reached the server the first time (its answer was what got lost),
//! so a log batch can in rare cases arrive twice.
//!
//! | call      | per-request timeout         | retried for                                 |
//! |-----------|-----------------------------|---------------------------------------------|
//! | register  | [`REQUEST_TIMEOUT`]         | as long as it takes (the caller can stop it)|
//! | claim     | claim wait + [`CLAIM_SLACK`] | as long as it takes (the caller can stop it)|
//! | heartbeat | the heartbeat interval, ≥ 2 s | one heartbeat interval (the next one follows)|
//! | logs, finish | [`REQUEST_TIMEOUT`]      | one lease: after that the job is gone anyway |
//! | artifact  | [`UPLOAD_TIMEOUT`]          | one lease                                   |
//!
//! A 409 is [`ClientError::LeaseLost`] and is never retried; 401 and 403 are
//! [`ClientError::Unauthorized`]. Other answers are [`ClientError::Status`]: the runner registers
//! again when a claim answers 404 (the server no longer knows it).

use domain::run::protocol::{
    ClaimRequest, ClaimedJob, FinishRequest, HeartbeatRequest, HeartbeatResponse, LogBatch,
    RegisterRequest, RegisterResponse,
};
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};
use serde::de::DeserializeOwned;
use std::path::Path;
use std::time::Duration;
use tokio::time::Instant;
use uuid::Uuid;

/// How long an ordinary call may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long opening a connection may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A claim is a long poll: it may take the server's wait plus this much.
pub const CLAIM_SLACK: Duration = Duration::from_secs(15);
/// An artifact upload may take this long (a few hundred MB over a slow link).
pub const UPLOAD_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// The first pause before a retry; it doubles each time…
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// …up to this, so a server that comes back is found within seconds.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How much of an error body is kept for the message.
const ERROR_BODY_CHARS: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered 409: it no longer holds this job for this runner.
    #[error("the server answered 409: this runner no longer holds the job's lease")]
    LeaseLost,
    #[error("the server refused the runner token ({0}); check --token and its `runner` scope")]
    Unauthorized(StatusCode),
    #[error("the server answered {status} to {what}: {body}")]
    Status {
        what: &'static str,
        status: StatusCode,
        body: String,
    },
    #[error("cannot reach the server for {what}: {source}")]
    Transport {
        what: &'static str,
        source: reqwest::Error,
    },
    #[error("the server's answer to {what} is not what the protocol says: {source}")]
    Decode {
        what: &'static str,
        source: reqwest::Error,
    },
    /// A claimed job whose description does not parse: the server speaks a newer protocol.
    #[error("cannot read the claimed job: {reason}")]
    UnreadableJob {
        job_id: Option<Uuid>,
        attempt: Option<i32>,
        reason: String,
    },
    #[error("cannot read {path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
}

/// One artifact file to upload.
#[derive(Debug)]
pub struct ArtifactUpload<'a> {
    pub runner_id: Uuid,
    pub attempt: i32,
    /// The declared name.
    pub name: &'a str,
    /// The name to offer on download: `app.apk`, or `web.tar.gz` for a directory.
    pub file_name: &'a str,
    /// A .tar.gz of a directory (sent as `application/gzip`), not a file as it is.
    pub gzip: bool,
    pub path: &'a Path,
}

#[derive(Debug, thiserror::Error)]
#[error("the server URL `{url}` is not valid: {reason}")]
pub struct BadServerUrl {
    url: String,
    reason: String,
}

/// How long a call keeps retrying.
#[derive(Debug, Clone, Copy)]
enum Budget {
    Forever,
    For(Duration),
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    /// Ends with `/`, so joining a relative path keeps any prefix the server lives under.
    base: Url,
    token: String,
    claim_timeout: Duration,
    heartbeat_every: Duration,
    lease: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base.as_str())
            .field("token", &"***")
            .finish_non_exhaustive()
    }
}

impl Client {
    /// `url` is the server's address, e.g. `https://deploy.example.com` (a path prefix is kept).
    /// `claim_wait`, `heartbeat_every` and `lease` are the protocol's timings (see the table in
    /// the module doc for how they bound timeouts and retries).
    pub fn new(
        url: &str,
        token: &str,
        claim_wait: Duration,
        heartbeat_every: Duration,
        lease: Duration,
    ) -> Result<Self, BadServerUrl> {
        let bad = |reason: String| BadServerUrl {
            url: url.to_string(),
            reason,
        };
        let mut base = Url::parse(url).map_err(|e| bad(e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(bad("it must start with http:// or https://".into()));
        }
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("flightdeck-runner/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| bad(e.to_string()))?;
        Ok(Client {
            http,
            base,
            token: token.to_string(),
            claim_timeout: claim_wait + CLAIM_SLACK,
            heartbeat_every,
            lease,
        })
    }

    pub async fn register(
        &self,
        request: &RegisterRequest,
    ) -> Result<RegisterResponse, ClientError> {
        let url = self.url(&["register"]);
        let response = self
            .send("register", Budget::Forever, || {
                self.http
                    .post(url.clone())
                    .timeout(REQUEST_TIMEOUT)
                    .json(request)
            })
            .await?;
        decode("register", response).await
    }

    /// Waits for a job (the server holds the request up to its claim wait). `None`: nothing to
    /// do yet, ask again. A job this runner cannot read (a newer server) is
    /// [`ClientError::UnreadableJob`], so the caller can fail it rather than hold it.
    pub async fn claim(&self, runner_id: Uuid) -> Result<Option<ClaimedJob>, ClientError> {
        let url = self.url(&["claim"]);
        let body = ClaimRequest { runner_id };
        let response = self
            .send("claim", Budget::Forever, || {
                self.http
                    .post(url.clone())
                    .timeout(self.claim_timeout)
                    .json(&body)
            })
            .await?;
        if response.status() == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|source| ClientError::Transport {
                what: "claim",
                source,
            })?;
        match serde_json::from_slice(&bytes) {
            Ok(job) => Ok(Some(job)),
            Err(error) => {
                let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
                let job_id = value["job_id"].as_str().and_then(|id| id.parse().ok());
                let attempt = value["attempt"].as_i64().and_then(|a| a.try_into().ok());
                Err(ClientError::UnreadableJob {
                    job_id,
                    attempt,
                    reason: error.to_string(),
                })
            }
        }
    }

    pub async fn heartbeat(
        &self,
        job_id: Uuid,
        request: &HeartbeatRequest,
    ) -> Result<HeartbeatResponse, ClientError> {
        let url = self.job_url(job_id, &["heartbeat"]);
        let timeout = self
            .heartbeat_every
            .clamp(Duration::from_secs(2), REQUEST_TIMEOUT);
        let response = self
            .send("heartbeat", Budget::For(self.heartbeat_every), || {
                self.http.post(url.clone()).timeout(timeout).json(request)
            })
            .await?;
        decode("heartbeat", response).await
    }

    pub async fn logs(&self, job_id: Uuid, batch: &LogBatch) -> Result<(), ClientError> {
        let url = self.job_url(job_id, &["logs"]);
        self.send("logs", Budget::For(self.lease), || {
            self.http
                .post(url.clone())
                .timeout(REQUEST_TIMEOUT)
                .json(batch)
        })
        .await
        .map(drop)
    }

    /// PUTs the file at `upload.path` as the artifact `upload.name`, streamed from disk with its
    /// length.
    pub async fn upload_artifact(
        &self,
        job_id: Uuid,
        upload: &ArtifactUpload<'_>,
    ) -> Result<(), ClientError> {
        let path = upload.path;
        let mut url = self.job_url(job_id, &["artifacts", upload.name]);
        url.query_pairs_mut()
            .append_pair("runner_id", &upload.runner_id.to_string())
            .append_pair("attempt", &upload.attempt.to_string())
            .append_pair("file_name", upload.file_name);
        let content_type = if upload.gzip {
            "application/gzip"
        } else {
            "application/octet-stream"
        };
        let file_error = |source| ClientError::File {
            path: path.display().to_string(),
            source,
        };
        let started = Instant::now();
        let mut backoff = FIRST_BACKOFF;
        let mut tries = 0;
        // Each try opens the file again: a body stream cannot be rewound.
        loop {
            let file = tokio::fs::File::open(path).await.map_err(file_error)?;
            let length = file.metadata().await.map_err(file_error)?.len();
            let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file));
            let request = self
                .http
                .request(Method::PUT, url.clone())
                .timeout(UPLOAD_TIMEOUT)
                .bearer_auth(&self.token)
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .header(reqwest::header::CONTENT_LENGTH, length)
                .body(body);
            match self.outcome("artifact", request.send().await).await {
                Outcome::Done(result) => return result.map(drop),
                Outcome::Retry(error) => {
                    let budget = Budget::For(self.lease);
                    match Self::pause(&error, budget, started, &mut tries, &mut backoff) {
                        Some(delay) => tokio::time::sleep(delay).await,
                        None => return Err(error),
                    }
                }
            }
        }
    }

    pub async fn finish(&self, job_id: Uuid, request: &FinishRequest) -> Result<(), ClientError> {
        let url = self.job_url(job_id, &["finish"]);
        self.send("finish", Budget::For(self.lease), || {
            self.http
                .post(url.clone())
                .timeout(REQUEST_TIMEOUT)
                .json(request)
        })
        .await
        .map(drop)
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self
            .base
            .join("api/v1/runner")
            .expect("a fixed relative path");
        url.path_segments_mut()
            .expect("http URLs have paths")
            .extend(segments);
        url
    }

    fn job_url(&self, job_id: Uuid, segments: &[&str]) -> Url {
        let id = job_id.to_string();
        let mut all = vec!["jobs", id.as_str()];
        all.extend_from_slice(segments);
        self.url(&all)
    }

    async fn send(
        &self,
        what: &'static str,
        budget: Budget,
        request: impl Fn() -> RequestBuilder,
    ) -> Result<Response, ClientError> {
        let started = Instant::now();
        let mut backoff = FIRST_BACKOFF;
        let mut tries = 0;
        loop {
            let sent = request().bearer_auth(&self.token).send().await;
            match self.outcome(what, sent).await {
                Outcome::Done(result) => return result,
                Outcome::Retry(error) => {
                    match Self::pause(&error, budget, started, &mut tries, &mut backoff) {
                        Some(delay) => tokio::time::sleep(delay).await,
                        None => return Err(error),
                    }
                }
            }
        }
    }

    /// The pause before trying again after `error`, or `None` when the budget is spent. Doubles
    /// `backoff` for the time after. Says so at warn level on the first retry and about once a
    /// minute after, so a long outage is visible without flooding the log.
    fn pause(
        error: &ClientError,
        budget: Budget,
        started: Instant,
        tries: &mut u32,
        backoff: &mut Duration,
    ) -> Option<Duration> {
        let delay = *backoff;
        if let Budget::For(limit) = budget
            && started.elapsed() + delay > limit
        {
            return None;
        }
        *tries += 1;
        if *tries == 1 || tries.is_multiple_of(12) {
            tracing::warn!(%error, tries = *tries, "retrying until the server answers");
        } else {
            tracing::debug!(%error, "retrying in {delay:?}");
        }
        *backoff = (delay * 2).min(MAX_BACKOFF);
        Some(delay)
    }

    async fn outcome(&self, what: &'static str, sent: Result<Response, reqwest::Error>) -> Outcome {
        let response = match sent {
            Ok(response) => response,
            Err(source) => {
                // Not connected, no answer in time, or the connection broke mid-request.
                let retry = source.is_connect() || source.is_timeout() || source.is_request();
                let error = ClientError::Transport { what, source };
                return if retry {
                    Outcome::Retry(error)
                } else {
                    Outcome::Done(Err(error))
                };
            }
        };
        let status = response.status();
        if status.is_success() {
            return Outcome::Done(Ok(response));
        }
        let error = match status {
            StatusCode::CONFLICT => return Outcome::Done(Err(ClientError::LeaseLost)),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                return Outcome::Done(Err(ClientError::Unauthorized(status)));
            }
            _ => {
                let body = response.text().await.unwrap_or_default();
                ClientError::Status {
                    what,
                    status,
                    body: body.chars().take(ERROR_BODY_CHARS).collect(),
                }
            }
        };
        match status {
            StatusCode::BAD_GATEWAY
            | StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::GATEWAY_TIMEOUT => Outcome::Retry(error),
            _ => Outcome::Done(Err(error)),
        }
    }
}

enum Outcome {
    Done(Result<Response, ClientError>),
    Retry(ClientError),
}

async fn decode<T: DeserializeOwned>(
    what: &'static str,
    response: Response,
) -> Result<T, ClientError> {
    response
        .json()
        .await
        .map_err(|source| ClientError::Decode { what, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(url: &str) -> Client {
        let d = Duration::from_secs(1);
        Client::new(url, "fdt_secret", d, d, d).unwrap()
    }

    #[test]
    fn urls_keep_a_path_prefix_and_encode_artifact_names() {
        let id = Uuid::nil();
        assert_eq!(
            client("http://h:1").url(&["claim"]).as_str(),
            "http://h:1/api/v1/runner/claim"
        );
        assert_eq!(
            client("https://h/flightdeck")
                .job_url(id, &["artifacts", "web build"])
                .as_str(),
            "https://h/flightdeck/api/v1/runner/jobs/00000000-0000-0000-0000-000000000000/artifacts/web%20build"
        );
    }

    #[test]
    fn a_server_url_must_be_http() {
        let d = Duration::from_secs(1);
        assert!(Client::new("ftp://h", "t", d, d, d).is_err());
        assert!(Client::new("not a url", "t", d, d, d).is_err());
    }

    #[test]
    fn debug_never_shows_the_token() {
        assert!(!format!("{:?}", client("http://h")).contains("fdt_secret"));
    }
}
